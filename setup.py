"""mdg: unsupervised anomalous sound detection under domain shift (MIMII DG, DCASE 2022/2023 Task 2)."""
import setuptools

setuptools.setup(
    name="mdg",
    version="0.1.0",
    description="JAX/Flax research codebase for anomalous machine sound detection under domain shift",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The code's licence; the DCASE 2023 clips in tests/data/ (not in the package) are CC BY-NC-SA 4.0.
    license_expression="Apache-2.0",  # SPDX (PEP 639), which replaces the "License ::" classifiers
    license_files=["LICENSE"],
    packages=setuptools.find_packages(include=["mdg", "mdg.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.6",
        "flax>=0.11",
        "optax>=0.2",
        "orbax-checkpoint>=0.11",
        "numpy>=1.26",
        "scipy>=1.11",
        "soundfile>=0.12",
        "ml-collections>=0.1.1",
        "tensorflow-datasets>=4.9.7",
        "array-record>=0.5",
        # tensorflow-datasets imports it for builders defined in packages but declares it only for
        # Python < 3.9 (tensorflow/datasets#11212).
        "importlib_resources",
        "absl-py>=2.0",
        "tqdm>=4.60",
        "pyarrow>=14",  # results/clips.parquet
        "scikit-learn>=1.3",  # PCA of embeddings and ROC curves in mdg.report
        "tensorboardX>=2.6",  # TensorBoard logs without TensorFlow (numpy, protobuf, packaging)
        "etils[epath]",  # workdir outputs on local disks and gs:// buckets (orbax uses it too)
    ],
    extras_require={
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        "gcs": ["etils[epath-gcs]", "google-cloud-storage"],  # gs:// workdirs (epath; tensorboardX)
        "test": ["pytest>=7", "librosa>=0.10", "scikit-learn>=1.3", "matplotlib>=3.7", "pandas>=2.0",
                 "tensorboard>=2.14", "selenium>=4.20"],
        "plots": ["matplotlib>=3.7"],
        "bench": ["librosa>=0.10", "scikit-learn>=1.3", "torch>=2.0"],
        "docs": ["matplotlib>=3.7", "librosa>=0.10", "scikit-learn>=1.3"],
    },
)
