"""Typed configuration schema (Hydra structured configs).

Every YAML file under ``conf/`` and ``experiments/`` extends one of these dataclasses.
Required values are ``MISSING``, so an incomplete config fails at composition with the
key named. Modes are declared as enums here but typed ``str`` in the dataclasses: OmegaConf
matches enum *names*, and values such as ``class`` or ``raise`` are Python keywords.
``platform.config.validate`` checks every mode against its enum (naming the allowed
values) and the cross-field rules that a type cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, List, Optional

from omegaconf import MISSING


class Regularizer(str, Enum):
    """First-stage latent regularisation (paper §3.1); ``none`` is the f = 1 identity."""

    kl = "kl"
    vq = "vq"
    none = "none"


class Conditioning(str, Enum):
    """How the LDM denoiser sees y (paper §3.3)."""

    none = "none"
    class_label = "class"  # cross-attention on a learned class embedding
    text = "text"  # cross-attention on text-encoder tokens
    concat = "concat"  # low-resolution image concatenated to z (super-resolution)


class TextEncoder(str, Enum):
    frozen_minilm = "frozen_minilm"  # bundled all-MiniLM-L6-v2, frozen
    bert = "bert"  # BERT-style encoder built from config, trained jointly (paper)


class Prediction(str, Enum):
    epsilon = "epsilon"
    v_prediction = "v_prediction"


class ReferenceSplit(str, Enum):
    """Which shards the generated samples are compared with (``data.train_shards`` or ``eval_shards``)."""

    train = "train"
    eval = "eval"


class BetaSchedule(str, Enum):
    """diffusers' beta schedules; LDM's "linear" is ``scaled_linear`` (linear in sqrt(beta))."""

    linear = "linear"
    scaled_linear = "scaled_linear"
    squaredcos_cap_v2 = "squaredcos_cap_v2"


class Precision(str, Enum):
    """Autocast dtype on GPU (CPU always runs fp32)."""

    bf16 = "bf16"
    fp32 = "fp32"


class Sampler(str, Enum):
    ddim = "ddim"
    ddpm = "ddpm"


class OnError(str, Enum):
    """What the data loader does with an undecodable sample."""

    raise_ = "raise"
    skip = "skip"


class EvalCheckpoints(str, Enum):
    all = "all"
    last = "last"


class Scale(str, Enum):
    smoke = "smoke"
    local = "local"
    paper = "paper"


class Stage(str, Enum):
    first_stage = "first_stage"
    ldm = "ldm"
    eval = "eval"


class NightlyPolicy(str, Enum):
    """Which unevaluated checkpoints of a run the nightly job evaluates."""

    newest = "newest"  # only the run's newest complete checkpoint
    all = "all"  # every complete checkpoint not evaluated yet


@dataclass
class TrainConfig:
    """Optimisation budget shared by both training stages."""

    steps: int = MISSING
    batch_size: int = MISSING  # per worker
    grad_accum: int = 1
    lr: float = MISSING  # base learning rate, see ``scale_lr``
    scale_lr: bool = True  # lr *= global batch (CompVis convention)
    ckpt_every: int = MISSING
    log_every: int = 10
    num_workers: int = 1  # Ray Train workers (DDP ranks)
    use_gpu: bool = False
    # Restarts after a lost worker or node, each resuming from the latest intact checkpoint:
    # Ray Train worker-group restarts, or retries of the stage task when it trains in-process.
    max_failures: int = 2
    precision: str = "bf16"  # autocast dtype on GPU; CPU always runs fp32
    check_finite_every: int = 1  # stop on a NaN/inf loss, checked every N steps (0: never)


@dataclass
class DataConfig:
    """Webdataset shards written by ``python -m platform.data build``."""

    name: str = MISSING
    train_shards: str = MISSING  # directory holding manifest.json + *.tar
    eval_shards: str = MISSING  # held-out split (reconstruction metrics, references)
    resolution: int = 32
    channels: int = 3
    num_classes: int = 10
    shuffle_buffer: int = 1000
    loader_workers: int = 2  # torch DataLoader workers per rank
    on_error: str = OnError.raise_.value


@dataclass
class FirstStageConfig:
    """A first-stage autoencoder preset (paper Tab. 8; CompVis ``autoencoder_*`` configs)."""

    name: str = MISSING
    regularizer: str = MISSING  # Regularizer
    f: int = MISSING  # downsampling factor H/h
    latent_channels: int = MISSING
    base_channels: int = 128
    channel_mult: List[int] = MISSING  # one entry per resolution level: log2(f) + 1
    num_res_blocks: int = 2
    attn_resolutions: List[int] = field(default_factory=list)
    codebook_size: int = 0  # |Z| for VQ, 0 otherwise
    kl_weight: float = 1.0e-6
    learn_logvar: bool = False  # CompVis keeps the NLL's log-variance out of the optimiser (s = 0)
    codebook_weight: float = 1.0
    vq_beta: float = 0.25
    perceptual_weight: float = 1.0
    disc_weight: float = 0.5
    disc_start: int = MISSING
    disc_layers: int = 3
    disc_channels: int = 64
    # rFID after training: 2·N Inception passes (eval.num_samples), on a CPU more than a
    # small first stage's whole training; PSNR / SSIM / LPIPS are always computed.
    rfid: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class UNetConfig:
    """Denoiser size (paper Tab. 13 at ``scale=paper``)."""

    channels: int = MISSING
    channel_mult: List[int] = MISSING
    num_res_blocks: int = 2
    attention_resolutions: List[int] = MISSING  # spatial sizes that get attention
    num_heads: int = 1
    transformer_depth: int = 1
    context_dim: int = 512  # width of τθ(y), the cross-attention context


@dataclass
class PaperPreset:
    """One column of Tab. 13: network, batch and learning rate for a given f."""

    unet: UNetConfig = MISSING
    batch_size: int = MISSING
    lr: float = MISSING


@dataclass
class ConditioningConfig:
    text_encoder: str = TextEncoder.frozen_minilm.value
    text_layers: int = 2  # for the trainable BERT-style encoder
    max_text_tokens: int = 32
    cfg_dropout: float = 0.1  # P(drop y) for classifier-free guidance
    sr_factor: int = 4  # concat conditioning: low-res input is resolution / sr_factor


@dataclass
class DiffusionConfig:
    num_steps: int = 1000
    beta_schedule: str = "scaled_linear"  # LDM's "linear" is linear in sqrt(beta)
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    prediction: str = Prediction.epsilon.value


@dataclass
class LdmConfig:
    unet: UNetConfig = MISSING
    conditioning: str = Conditioning.class_label.value
    cond: ConditioningConfig = field(default_factory=ConditioningConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    ema_decay: float = 0.9999
    latent_cache: bool = False
    sample_every: int = 0  # 0: only at the end
    train: TrainConfig = field(default_factory=TrainConfig)
    # Tab. 13 columns keyed by f ("1".."32"); ``scale=paper`` points ``unet``/``train`` here.
    tab13: Dict[str, PaperPreset] = field(default_factory=dict)


@dataclass
class EvalConfig:
    metrics: List[str] = field(default_factory=lambda: ["fid", "kid", "pr", "is"])
    num_samples: int = MISSING  # N of generated samples (and of reference images)
    reference_split: str = ReferenceSplit.train.value
    sampler: str = Sampler.ddim.value
    sampling_steps: List[int] = field(default_factory=lambda: [100])  # first = headline
    checkpoints: str = "all"  # EvalCheckpoints: every kept LDM checkpoint (Fig. 6 curve) or "last"
    eta: float = 0.0
    guidance_scale: float = 1.0
    batch_size: int = 64
    num_workers: int = 1  # evaluation actors
    gpus_per_worker: float = 0.0
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    pr_k: int = 3
    uncertainty_repeats: int = 10  # half-subsamples behind the FID and precision/recall intervals
    reference_seed: int = 0  # the reference images are a random draw of N_ref with this seed
    seed: int = 0
    inception_weights: Optional[str] = None  # explicit path; otherwise the resolver


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None: sqlite store under paths.work_dir
    experiment_name: Optional[str] = None  # None: the platform experiment's name


@dataclass
class ClusterConfig:
    kind: str = "local"  # local: start one unless an address is given; remote: an address is required
    address: Optional[str] = None  # None: RAY_ADDRESS, else a new local cluster
    num_cpus: Optional[int] = None
    num_gpus: Optional[int] = None
    object_store_memory: Optional[int] = None


@dataclass
class ScaleConfig:
    name: str = MISSING  # Scale
    description: str = ""


@dataclass
class ExperimentConfig:
    name: str = "default"
    description: str = ""


@dataclass
class SweepConfig:
    dry_run: bool = False
    stages: List[str] = field(default_factory=lambda: [s.value for s in Stage])
    max_concurrent_trials: int = 0  # 0: no limit beyond the cluster's resources
    # Run these again even if a verified result exists: stage names and/or key prefixes
    # (``sweep.rerun=[eval]``, ``sweep.rerun=[3fa2c1]``); what consumes them runs again too.
    rerun: List[str] = field(default_factory=list)


@dataclass
class ChampionConfig:
    """A pinned baseline that nightly results are also compared with (none by default)."""

    model_alias: Optional[str] = None  # "registered-model-name@alias": that version's run
    run_tag: Optional[str] = None  # "key=value": the newest run carrying this tag


@dataclass
class NightlyConfig:
    """``python -m platform.nightly`` (conf/nightly/): what to evaluate each night."""

    experiments: List[str] = field(default_factory=list)  # empty: experiment.name
    policy: str = NightlyPolicy.all.value
    always_final: bool = True  # a finished run's final checkpoint goes first and is never cut by the budget
    max_checkpoints: int = 0  # 0: no limit
    max_minutes: float = 0.0  # 0: no limit; checked before each checkpoint starts
    since: Optional[str] = None  # ISO date/time: only runs with a checkpoint written since then
    tags: Dict[str, str] = field(default_factory=dict)  # MLflow tags a trial run must carry
    regression_metrics: List[str] = field(default_factory=lambda: ["fid", "kid", "precision", "recall"])
    champion: ChampionConfig = field(default_factory=ChampionConfig)
    run_experiment: str = "nightly"  # MLflow experiment holding one run per night
    state_dir: Optional[str] = None  # leases and the night's rows; None: <paths.work_dir>/nightly
    nice: int = 10  # CPU niceness added to the job: training on the same machine keeps priority


@dataclass
class EvaluateConfig:
    """``python -m platform.evaluate``: which LDM checkpoints (set exactly one)."""

    checkpoint: Optional[str] = None  # one checkpoint directory (.../checkpoints/step-NNNNNNNN)
    stage_key: Optional[str] = None  # every checkpoint of LDM stage <paths.work_dir>/stages/ldm/<key>
    run_id: Optional[str] = None  # every checkpoint of the LDM a trial (or LDM stage) run points at
    force: bool = False  # evaluate again even if this evaluation identity is already logged


@dataclass
class PathsConfig:
    data_dir: str = "data"  # relative paths resolve against the launch directory
    work_dir: str = "runs"


@dataclass
class Config:
    data: DataConfig = MISSING
    first_stage: FirstStageConfig = MISSING
    ldm: LdmConfig = MISSING
    eval: EvalConfig = MISSING
    tracking: TrackingConfig = MISSING
    cluster: ClusterConfig = MISSING
    scale: ScaleConfig = MISSING
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    nightly: NightlyConfig = field(default_factory=NightlyConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    seed: int = 0
    stage: Optional[str] = None  # Stage; ``python -m platform.train stage=...``
