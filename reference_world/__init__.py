"""The reference world's training, evaluation and model card (not part of the installed ldmprobe).

A small generator and measurer trained on synthetic pictures with planted associations; the
weights ship in ``ldmprobe/reference/weights`` and load like any local model. This package only
builds and checks them, from a checkout (run from the repository root):

    python -m reference_world.train --work WORK_DIR          (world 1; --world 2 for world 2)
    python -m reference_world.evaluate [--weights DIR]        (planted vs drawn, from the pixels)
    python -m reference_world.card [--weights DIR]            (writes MODEL_CARD.md)
    python -m reference_world.calibration OUT_DIR             (the rates' labelled calibration set)
"""
