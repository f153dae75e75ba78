"""UniPC (being written)."""


def sample_unipc(run, variant, order=3):
    raise NotImplementedError("uni_pc is being written")
