"""Counter-measures for imbalanced classification data: class weights and focal loss (losses, weights),
re-sampling (sampling), minority-class text augmentation (augment), binary decision thresholds
(threshold), and the `imbalance:` / `inspect:` recipe sections (config). Diagnostics live in
tunesmith.inspection. Importing this package is light; each module pulls in torch only where needed.
"""
