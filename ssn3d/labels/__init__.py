"""The labels room: the keypoints that anchor semi-supervised SSN, from a click to the file on disk.

The paper anchors part ``i`` of eq. (3) at keypoint ``i`` on a few labeled frames per tracklet
("Semi-supervised Training"). Where to change what:

* ``schema``: the label file's format and its checks; ``store``: the locked store of one dataset
  (``journal``: its append-only journal); ``frames``: a frame's key, matching foreign names to frames;
* ``editing``: clicks, saved edits and undo; ``progress``: what counts as labeled, what to label next
  in a tracklet; ``drawing``: the scale a frame is shown at;
* ``importing`` (what importers share), ``skeletons`` (other skeletons onto our parts), ``coco``,
  ``openpose``, ``formats`` (the importers the app offers by name);
* ``pose`` (+ ``_pose_worker``): the offline pose detector's suggestions; ``detect``: a whole dataset
  labeled by it; ``next``: which frames a model is least sure about; ``propagation``: labels carried to
  nearby frames by feature matching (``propagated``: their file beside a run).
"""
