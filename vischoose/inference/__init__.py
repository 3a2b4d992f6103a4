"""Inference on images: reading images and labelled data sets, predict, evaluate."""
