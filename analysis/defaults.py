"""The analysis defaults, apart so `vae-sweep --help` can show them without importing torch.

Sized so the whole analysis of a full-MNIST sweep (10,000 test images; 55,000 training images
as the kNN reference) finishes in under 5 minutes on 2 CPU cores; the README gives timings.
"""

# Importance samples per test image. The IWAE bound costs k decoder passes per image (~0.5 ms
# each on 2 cores): k=20 is ~100 s of the 5 minutes; k=100 alone would take ~8 minutes there.
IWAE_K = 20
# Test images on the t-SNE map: all of full MNIST's test set, as in the post (~30-60 s).
TSNE_POINTS = 10_000
