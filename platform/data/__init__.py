"""Datasets as webdataset tar shards plus a ``manifest.json``.

``python -m platform.data build|verify|info`` (see ``__main__``) writes and checks them;
``platform.data.loader.make_loader`` streams them to training and evaluation;
``platform.data.shards.ShardWriter`` writes shards for other stages (e.g. the latent cache).
"""
