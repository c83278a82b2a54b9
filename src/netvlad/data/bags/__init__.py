"""ROS bags (ROS 1 ``.bag``, ROS 2 SQLite or MCAP folders, bare ``.mcap`` files): topics, image messages,
positions, keyframes, and writing messages back — read and written with the pure-Python ``rosbags`` package."""
