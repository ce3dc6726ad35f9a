"""Tools beside the product: benchmarks, soak, GPU check, demo, camera stand-in, synthetic scenes
and worlds, and the transformers reference. Neither the core nor the ROS layer imports them."""
