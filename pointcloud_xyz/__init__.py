"""Back-projection of depth images into x, y, z point clouds for the Nav2 costmap."""
