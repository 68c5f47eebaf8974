"""Evaluation workers: K detectors each take a disjoint slice of the images; the driver merges.

``extract_stats`` is the per-worker function and runs without Ray. ``evaluate`` runs it
in-process (``num_workers`` 0 or 1) or on K Ray actors (one per GPU on a cluster, K CPU
actors locally), merges the statistics (Σx, XᵀX add; raw rows are re-sorted by sample
index, so K = 1 and K = 2 give the same arrays) and calls the pure metric functions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from evaluation import metrics as M
from evaluation.assets import ResolvedAsset, resolve_inception
from evaluation.detector import IS_UNAVAILABLE, InceptionDetector, detector_hash
from evaluation.reference import ReferenceCache, reference_key
from evaluation.report import METRICS, EvalReport, MetricResult, parse_metrics
from evaluation.resampling import DEFAULT_REPEATS, fid_infinity, half_subsample_intervals
from evaluation.sources import ImageSource
from evaluation.stats import FeatureStats
from evaluation.uncertainty import IS_SPLITS, KID_SUBSETS, Interval

log = logging.getLogger(__name__)


@dataclass
class SliceTiming:
    """Seconds one worker spent producing images (read or generate) and in the detector."""

    images: int = 0
    source_s: float = 0.0
    detector_s: float = 0.0
    workers: int = 1
    wall_s: float = 0.0
    per_worker: list = field(default_factory=list)


def extract_stats(
    source: ImageSource,
    start: int,
    stop: int,
    detector: InceptionDetector,
    *,
    keep_features: bool,
    keep_logits: bool,
    batch_size: int = 64,
) -> tuple[FeatureStats, SliceTiming]:
    """Statistics of ``source`` images ``start..stop-1`` (one worker's slice)."""
    stats = FeatureStats(2048, keep_features=keep_features, keep_logits=keep_logits)
    timing = SliceTiming()
    if hasattr(source, "prepare"):
        source.prepare()
    for lo in range(start, stop, batch_size):
        idx = list(range(lo, min(lo + batch_size, stop)))
        t0 = time.perf_counter()
        images = source.images(idx)  # (n, 3, H, W) uint8
        t1 = time.perf_counter()
        features, logits = detector(images)
        timing.source_s += t1 - t0
        timing.detector_s += time.perf_counter() - t1
        stats.update(features, idx, logits if keep_logits else None)
        timing.images += len(idx)
    return stats, timing


class EvalWorker:
    """One detector on one device; Ray wraps it as an actor (see :func:`evaluate`)."""

    def __init__(self, asset: ResolvedAsset, device: str, batch_size: int, num_threads: Optional[int] = None,
                 detector: Optional[InceptionDetector] = None) -> None:
        self.batch_size = batch_size
        if detector is not None:  # in-process reuse of an already loaded detector
            self.detector = detector
            return
        if num_threads:
            torch.set_num_threads(num_threads)  # an actor owns num_cpus cores, not the machine
        # The driver's file when this node sees it; otherwise resolve here (remote nodes).
        local = asset if Path(asset.path).is_file() else resolve_inception()
        if detector_hash(local) != detector_hash(asset):
            raise RuntimeError(f"worker resolved different Inception weights ({local.path}) than the driver ({asset.path})")
        self.detector = InceptionDetector(local, device=device, batch_size=batch_size)

    def ready(self) -> str:
        """Returns once the detector is loaded (so timings exclude actor start-up)."""
        return self.detector.hash

    def extract(self, source: ImageSource, start: int, stop: int, keep_features: bool, keep_logits: bool) -> tuple[dict, SliceTiming]:
        stats, timing = extract_stats(
            source, start, stop, self.detector, keep_features=keep_features, keep_logits=keep_logits, batch_size=self.batch_size
        )
        return stats.to_dict(), timing


def even_slices(n: int, parts: int, batch_size: int = 1) -> list[tuple[int, int]]:
    """[start, stop) of ``parts`` contiguous slices of ``range(n)`` made of whole batches of
    ``batch_size`` (counted from 0), differing in size by at most one batch.

    Whole batches make the result independent of K: every image meets the detector in
    the same batch whatever the split, and float32 convolutions can differ with batch
    composition (different kernels), which would move FID by far more than float64 noise.
    """
    batches = -(-n // batch_size)
    bounds = [min(n, batch_size * (batches * i // parts)) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _check_feasible(bundle: dict[str, float], count: int) -> None:
    """Refuse a pool the whole cluster could never hold (its placement group would wait forever)."""
    import ray

    total = ray.cluster_resources()
    for resource, amount in bundle.items():
        if amount * count > total.get(resource, 0.0):
            raise ValueError(
                f"eval.num_workers={count} with {amount:g} {resource} each needs {amount * count:g} {resource}, but "
                f"the Ray cluster has {total.get(resource, 0.0):g}; lower eval.num_workers or eval.gpus_per_worker")


def _remove_orphaned_group() -> str:
    """The placement-group name for this Ray task, after removing a group left under it.

    A placement group lives as long as the job that made it, not the task: an evaluation
    task killed with its worker (OOM, a lost node) leaves its reservation behind, and its
    retry (same task id) would wait forever for CPUs that the dead attempt still holds.
    Outside a task (a driver, a test) the group is anonymous ("") and closed by ``_Pool.close``.
    """
    import uuid

    import ray
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    context = ray.get_runtime_context()
    task_id = context.get_task_id() if context.worker.mode == ray.WORKER_MODE else None
    if not task_id:
        return ""
    prefix = f"eval-pool-{task_id}-"
    for group_id, info in placement_group_table().items():
        if info.get("name", "").startswith(prefix) and info.get("state") != "REMOVED":
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
    return prefix + uuid.uuid4().hex[:8]


class _Pool:
    """Runs ``extract`` on one in-process worker or on K Ray actors, and merges."""

    def __init__(self, asset: ResolvedAsset, *, num_workers: int, use_ray: bool, device: str, batch_size: int,
                 gpus_per_worker: float, cpus_per_worker: float, detector: Optional[InceptionDetector] = None) -> None:
        self.num_workers = max(1, num_workers)
        self.use_ray, self.batch_size = use_ray, batch_size
        if not use_ray:
            self.workers = [EvalWorker(asset, device, batch_size, detector=detector)]
            return
        import ray

        from platform.cluster import ray_init

        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        ray_init()
        bundle = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
        _check_feasible(bundle, self.num_workers)
        self.workers, self.group = [], None
        # All K actors' resources are reserved at once, or none: several evaluations that
        # each grabbed part of their actors would otherwise wait on each other forever.
        name = _remove_orphaned_group()
        self.group = placement_group([bundle] * self.num_workers, strategy="PACK", name=name)
        try:
            ray.get(self.group.ready())
            actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(EvalWorker)
            threads = max(1, int(cpus_per_worker)) if gpus_per_worker == 0 else None
            self.workers = [
                actor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.group, placement_group_bundle_index=i)).remote(asset, device, batch_size, threads)
                for i in range(self.num_workers)
            ]
            ray.get([w.ready.remote() for w in self.workers])
        except BaseException:  # interrupted or an actor failed: give the reservation back
            self.close()
            raise

    def run(self, source: ImageSource, n: int, *, keep_features: bool, keep_logits: bool) -> tuple[FeatureStats, SliceTiming]:
        t0 = time.perf_counter()
        slices = even_slices(n, len(self.workers), self.batch_size)
        if self.use_ray:
            import ray

            futures = [w.extract.remote(source, lo, hi, keep_features, keep_logits) for w, (lo, hi) in zip(self.workers, slices)]
            results = ray.get(futures)
        else:
            results = [self.workers[0].extract(source, 0, n, keep_features, keep_logits)]
        stats = FeatureStats.merge([FeatureStats.from_dict(d) for d, _ in results])
        timings = [t for _, t in results]
        total = SliceTiming(
            images=sum(t.images for t in timings),
            source_s=sum(t.source_s for t in timings),
            detector_s=sum(t.detector_s for t in timings),
            workers=len(self.workers),
            wall_s=time.perf_counter() - t0,
            per_worker=[t.images / t.detector_s if t.detector_s else 0.0 for t in timings],
        )
        return stats, total

    def close(self) -> None:
        if self.use_ray:
            import ray

            from ray.util.placement_group import remove_placement_group

            for w in self.workers:
                ray.kill(w)
            if self.group is not None:
                remove_placement_group(self.group)
                self.group = None


def evaluate(
    fake: ImageSource,
    real: Optional[ImageSource] = None,
    *,
    metrics: str | Sequence[str] = METRICS,
    num_samples: Optional[int] = None,
    num_reference: Optional[int] = None,
    num_workers: int = 1,
    use_ray: Optional[bool] = None,
    batch_size: int = 64,
    cache_dir: Optional[str | Path] = None,
    use_cache: bool = True,
    device: Optional[str] = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    inception_weights: Optional[str | Path] = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    is_splits: int = 10,
    repeats: int = DEFAULT_REPEATS,
    detector: Optional[InceptionDetector] = None,
) -> EvalReport:
    """FID / KID / precision-recall / IS of ``fake`` against ``real``.

    Args:
        fake: generated (or evaluated) images; the first ``num_samples`` are used.
        real: reference images (needed for FID, KID, PR); the first ``num_reference``.
        metrics: subset of ``fid, kid, pr, is``.
        num_samples: N (default: all of ``fake``).
        num_reference: reference N (default: min(N, len(real)); pass len(real) for
            the paper's "against the whole training set").
        num_workers: K detectors. ``use_ray`` (default: K > 1) runs them as Ray actors;
            otherwise one in-process detector does all the work.
        cache_dir: reference statistics cache (default: ``<evaluation cache>/references``).
        device: in-process device, or each actor's when ``gpus_per_worker`` is 0
            (default: cuda if available, else cpu). Actors with GPUs use ``cuda``.
        inception_weights: explicit weights file (``eval.inception_weights``).
        detector: an already loaded detector to reuse in-process (e.g. evaluating several
            checkpoints in one process); its weights replace ``inception_weights``.
        repeats: half-subsamples behind the FID and precision/recall intervals.

    Returns:
        EvalReport with each metric's value and N, or its unavailable reason.
    """
    names = parse_metrics(list(metrics) if not isinstance(metrics, str) else metrics)
    n = len(fake) if num_samples is None else int(num_samples)
    if not 0 < n <= len(fake):
        raise ValueError(f"num_samples={n} but {fake.describe()} has {len(fake)} images")
    needs_real = any(m in names for m in ("fid", "kid", "pr"))
    if needs_real and real is None:
        raise ValueError(f"metrics {names} need reference images: pass real=")
    n_ref = 0
    if needs_real:
        n_ref = min(n, len(real)) if num_reference is None else int(num_reference)
        if not 0 < n_ref <= len(real):
            raise ValueError(f"num_reference={n_ref} but {real.describe()} has {len(real)} images")
    if use_ray is None:
        use_ray = num_workers > 1
    if device is None:
        device = "cuda" if gpus_per_worker > 0 or (not use_ray and torch.cuda.is_available()) else "cpu"

    if detector is not None and use_ray:
        raise ValueError("detector= is for in-process evaluation; Ray workers load their own (use num_workers <= 1)")
    asset = detector.asset if detector is not None else resolve_inception(inception_weights)
    keep_features = needs_real  # raw rows: KID, precision/recall, and the intervals of FID (FID∞)
    keep_logits = "is" in names and asset.has_classifier
    info: dict = {"detector": detector_hash(asset), "weights_source": asset.source, "num_workers": max(1, num_workers),
                  "fake": fake.describe(), "real": real.describe() if real is not None else None}
    throughput: dict[str, float] = {}
    pool = None

    def get_pool() -> _Pool:
        nonlocal pool
        if pool is None:
            pool = _Pool(asset, num_workers=num_workers, use_ray=use_ray, device=device, batch_size=batch_size,
                         gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, detector=detector)
        return pool

    try:
        # reference statistics: cached by content, N and detector
        real_stats = None
        if needs_real:
            cache = ReferenceCache(cache_dir)
            key = _cache_key(real, n_ref, asset) if use_cache else None
            real_stats = cache.load(key, need_features=keep_features) if key else None
            info["reference_cache"] = "hit" if real_stats is not None else ("miss" if key else "off")
            if real_stats is None:
                real_stats, timing = get_pool().run(real, n_ref, keep_features=keep_features, keep_logits=False)
                throughput["real_images_per_s"] = timing.images / timing.wall_s
                if key:
                    info["reference_cache_file"] = str(cache.save(key, real_stats))
        # generated / evaluated images
        fake_stats, timing = get_pool().run(fake, n, keep_features=keep_features, keep_logits=keep_logits)
        throughput["images_per_s"] = timing.images / timing.wall_s
        # per-stage rates of the K workers together (each worker's busy time, summed)
        if timing.detector_s:
            throughput["detector_images_per_s"] = timing.images / timing.detector_s * timing.workers
        if timing.source_s:
            throughput["source_images_per_s"] = timing.images / timing.source_s * timing.workers  # read or generate
    finally:
        if pool is not None:
            pool.close()
    results = compute_metrics(fake_stats, real_stats, names, has_classifier=asset.has_classifier,
                              kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, pr_k=pr_k, is_splits=is_splits, repeats=repeats)
    return EvalReport(results, throughput, info)


def _cache_key(real: ImageSource, n_ref: int, asset: ResolvedAsset) -> Optional[str]:
    try:
        return reference_key(real.cache_key(), n_ref, detector_hash(asset))
    except ValueError as err:  # e.g. a generated source without a key
        log.info("reference statistics not cached: %s", err)
        return None


def compute_metrics(
    fake: FeatureStats,
    real: Optional[FeatureStats],
    names: Sequence[str],
    *,
    has_classifier: bool,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    is_splits: int = 10,
    repeats: int = DEFAULT_REPEATS,
) -> dict[str, MetricResult]:
    """Pure: statistics in, metric results out, each with its N, N_ref and interval
    (``evaluation.uncertainty``), or the reason it is unavailable.

    FID comes with FID∞ (``fid_inf``). Intervals of FID and precision/recall need the raw
    features (``keep_features``); without them those metrics carry no interval.
    KID subsets are capped at half of the smaller set so they differ; the size used is in
    ``details["subset_size"]``.
    """
    n, n_ref = fake.count, (real.count if real is not None else None)
    out: dict[str, MetricResult] = {}
    raw = real is not None and fake.features is not None and real.features is not None
    x = fake.features.double().numpy() if raw else None
    y = real.features.double().numpy() if raw else None

    def guarded(names_out: tuple[str, ...], compute) -> None:
        # The metric functions raise ValueError only for too few samples: report that reason.
        try:
            compute()
        except ValueError as err:
            for name in names_out:
                if name not in out:
                    out[name] = MetricResult(None, n, n_ref if name != "is" else None, unavailable=str(err), name=name)
                elif out[name].interval is None:  # the value exists; too few samples for its interval
                    out[name].details["no_interval"] = str(err)

    def fid() -> None:
        if raw:  # the same quantity in sample space: O(n²D), not a D x D eigendecomposition (~10 s at D = 2048)
            value = M.frechet_distance_features(x, y)
        else:
            (mu1, s1), (mu2, s2) = fake.mean_cov(), real.mean_cov()
            value = M.frechet_distance(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
        out["fid"] = MetricResult(value, n, n_ref, name="fid")
        if raw:
            out["fid"].interval = half_subsample_intervals([value], x, y, lambda a, b: [M.frechet_distance_features(a, b)],
                                                           repeats=repeats)[0]
            fid_inf, interval, sizes = fid_infinity(x, y, value)
            out["fid_inf"] = MetricResult(fid_inf, n, n_ref, interval=interval, details={"sizes": sizes}, name="fid_inf")

    def kid() -> None:
        # Subsets of at most half of the smaller set, so that they differ (torch-fidelity
        # refuses a subset larger than the set; at the full size every subset is the set).
        size = min(kid_subset_size, n // 2, n_ref // 2)
        mean, std, m = M.kernel_inception_distance(fake.features, real.features, subsets=kid_subsets, subset_size=size)
        scale = (m / (min(n, n_ref) - m)) ** 0.5  # delete-d jackknife: subset spread -> spread of the mean
        out["kid"] = MetricResult(mean, n, n_ref, std=std, details={"subset_size": m, "subsets": kid_subsets}, name="kid",
                                  interval=Interval.around(mean, std * scale, KID_SUBSETS, kid_subsets))

    def pr() -> None:
        precision, recall = M.precision_recall(fake.features, real.features, k=pr_k)
        details = {"k": pr_k, "features": "inception-pool3"}
        out["precision"] = MetricResult(precision, n, n_ref, details=details, name="precision")
        out["recall"] = MetricResult(recall, n, n_ref, details=dict(details), name="recall")
        statistic = lambda a, b: M.precision_recall(torch.from_numpy(a), torch.from_numpy(b), k=pr_k)  # noqa: E731
        out["precision"].interval, out["recall"].interval = half_subsample_intervals(
            [precision, recall], x, y, statistic, repeats=repeats)

    def inception_score() -> None:
        if not has_classifier or fake.logits is None:
            raise ValueError(IS_UNAVAILABLE)
        mean, std = M.inception_score(fake.logits, splits=is_splits)
        # disjoint splits: the standard error of their mean is std / sqrt(splits)
        out["is"] = MetricResult(mean, n, std=std, details={"splits": is_splits}, name="is",
                                 interval=Interval.around(mean, std / is_splits ** 0.5, IS_SPLITS, is_splits))

    for name, outputs, compute in (("fid", ("fid", "fid_inf"), fid), ("kid", ("kid",), kid),
                                   ("pr", ("precision", "recall"), pr), ("is", ("is",), inception_score)):
        if name in names:
            guarded(outputs, compute)
    return out


def evaluate_config(fake: ImageSource, real: Optional[ImageSource], cfg, *, cache_dir: Optional[str | Path] = None,
                    num_reference: Optional[int] = None) -> EvalReport:
    """:func:`evaluate` driven by an ``EvalConfig`` (``platform/config/schema.py``)."""
    return evaluate(
        fake, real, metrics=list(cfg.metrics), num_samples=cfg.num_samples, num_reference=num_reference,
        num_workers=cfg.num_workers, batch_size=cfg.batch_size, cache_dir=cache_dir, gpus_per_worker=cfg.gpus_per_worker,
        inception_weights=cfg.inception_weights, kid_subsets=cfg.kid_subsets, kid_subset_size=cfg.kid_subset_size, pr_k=cfg.pr_k,
        repeats=cfg.uncertainty_repeats,
    )
