"""The training engine on the core: modules, bottlenecks, the new layer, fine-tuning, export and inference."""
