"""Synthetic data in the styles of the paper's SSN study ("Study on SSN"), with ground truth.

* ``walkers``: articulated pedestrians in jittery detector boxes: a video-ReID dataset in the
  ``folder`` layout and a Pedestrian-128-style crop set, with every frame's 9 keypoints.
* ``amber``: Amber-Abstract-style paintings with planted motifs at known places.
* ``labels``: the few frames a person would label, and a pose detector's noisy guesses.
"""
