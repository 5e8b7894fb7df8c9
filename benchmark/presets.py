"""Named presets: the default main job and small ones for quick checks. Flags override a preset."""
from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # make run: the whole grid on scikit-learn's digits, under 10 minutes on 2 CPU cores
    # (vgg16 is left out here only for time: its jigsaw alone takes ~5 min on 2 cores; see "founding")
    "default": {
        "dataset": "digits",
        "backbones": "resnet18,resnet34,timm:mobilenetv3_small_100,raw_pixels",
        "pretexts": "none,rotation,jigsaw,colorization,autoencoder",
        "clusterers": "kmeans,faiss_kmeans,dbscan,hdbscan",
        "image_size": 32, "epochs": 1, "batch_size": 64, "lr": 0.01,
    },
    # a smoke run of every clusterer and pretext on small models, about a minute
    "quick": {
        "dataset": "digits",
        "backbones": "resnet18,timm:resnet10t,raw_pixels",
        "pretexts": "none,rotation,jigsaw,autoencoder",
        "clusterers": "kmeans,faiss_kmeans,dbscan,hdbscan",
        "image_size": 16, "epochs": 1, "batch_size": 64, "lr": 0.01, "max_steps": 10,
    },
    # the photo case: colour patches of scikit-learn's two sample photos, every pretext
    "photos": {
        "dataset": "sample_photos",
        "backbones": "resnet18,timm:mobilenetv3_small_100,raw_pixels",
        "pretexts": "none,rotation,jigsaw,colorization,autoencoder",
        "clusterers": "kmeans,faiss_kmeans,dbscan,hdbscan",
        "image_size": 64, "epochs": 2, "batch_size": 32, "lr": 0.01,
    },
    # the founding notebook's recipe: VGG16 on photos (slow on a CPU; meant for a GPU)
    "founding": {
        "dataset": "sample_photos",
        "backbones": "vgg16,resnet50,raw_pixels",
        "pretexts": "none,rotation,jigsaw,colorization,autoencoder",
        "clusterers": "kmeans,faiss_kmeans,dbscan,hdbscan",
        "image_size": 96, "epochs": 3, "batch_size": 32, "lr": 0.01,
    },
}
