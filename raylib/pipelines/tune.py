"""Ray Tune sweeps of heads on frozen embeddings.

One ``ray.tune.Tuner`` searches every head family at once (the family is a search
dimension): Optuna proposes configurations, ASHA stops weak MLP (per epoch) and XGBoost
(per boosting round) trials early, every trial declares its resources
(``tune.with_resources``) and ``max_concurrent_trials`` bounds the width, so a sweep wider
than the cluster makes an autoscaler add nodes.

Scores are balanced accuracy on a validation split carved (stratified, seeded) from the
stored train split; the stored test split is only touched by the final report. The best
configuration is refit on the same rows with the same seed, so its validation score equals
the best trial's, and exported as a model directory with the embeddings' backbone.

On an embedding store with ``--labels`` (a few labelled tiles of an area), a validation
split would be a handful of tiles: trials are scored by stratified k-fold cross-validation
over the tiles drawn for training (``--per-class``), the best configuration is refit on all
of them, the labelled tiles not drawn are the test, and the model is a head of the store
(its features and training tiles), as ``train-head --store`` writes.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from raylib.config import TuneConfig
from raylib.console import Progress
from raylib.errors import ConfigError
from raylib.eval import metrics
from raylib.eval.report_files import write_report
from raylib.formats.embtable import read_embeddings
from raylib.io import storage
from raylib.models import calibration
from raylib.models.calibration import oof_temperature
from raylib.models.heads import HEADS
from raylib.models.model_dir import created_by, write_model_dir
from raylib.pipelines.common.labelled_tiles import labelled_tiles, store_features, write_store_head
from raylib.pipelines.common.ray_session import ensure_ray
from raylib.raster import patches

log = logging.getLogger(__name__)
FAMILIES = ("logistic_regression", "mlp", "knn", "xgboost")


def search_space(families: list[str]) -> dict:
    from ray import tune

    return {
        "family": tune.choice(list(families)),
        "lr_C": tune.loguniform(1e-3, 10.0),
        "mlp_hidden": tune.choice([128, 256, 512]),
        "mlp_alpha": tune.loguniform(1e-6, 1e-2),
        "mlp_learning_rate": tune.loguniform(1e-4, 1e-2),
        "knn_k": tune.randint(3, 40),
        "knn_weights": tune.choice(["uniform", "distance"]),
        "xgb_max_depth": tune.randint(3, 9),
        "xgb_learning_rate": tune.loguniform(0.02, 0.3),
        "xgb_colsample": tune.uniform(0.2, 0.8),
    }


def default_points(families: list[str]) -> list[dict]:
    base = {"lr_C": 0.5, "mlp_hidden": 256, "mlp_alpha": 1e-4, "mlp_learning_rate": 1e-3, "knn_k": 10,
            "knn_weights": "distance", "xgb_max_depth": 5, "xgb_learning_rate": 0.15, "xgb_colsample": 0.3}
    return [{"family": f, **base} for f in families]


def make_head(config: dict, max_epochs: int, max_rounds: int, threads: int = 1, l2_normalize: bool = True):
    """The head a trial's flat configuration describes (``l2_normalize``: embeddings alone
    are L2-normalised; spectral statistics beside them are not)."""
    f = config["family"]
    if f == "logistic_regression":
        return HEADS[f](C=float(config["lr_C"]), l2_normalize=l2_normalize)
    if f == "mlp":
        return HEADS[f](hidden=int(config["mlp_hidden"]), alpha=float(config["mlp_alpha"]),
                        learning_rate=float(config["mlp_learning_rate"]), max_iter=max_epochs,
                        l2_normalize=l2_normalize)
    if f == "knn":
        return HEADS[f](n_neighbors=int(config["knn_k"]), weights=config["knn_weights"])
    if f == "xgboost":
        return HEADS[f](n_estimators=max_rounds, max_depth=int(config["xgb_max_depth"]),
                        learning_rate=float(config["xgb_learning_rate"]),
                        colsample_bytree=float(config["xgb_colsample"]), n_jobs=threads)
    raise ConfigError(f"Unknown head family {f!r}.", f"use some of {list(FAMILIES)}.")


def _score(head, X, y, classes) -> float:
    return metrics.classification_metrics(y, head.predict(X), classes)["balanced_accuracy"]


def fit_head(config: dict, data: dict, max_epochs: int, max_rounds: int, report=None, threads: int = 1):
    """Fit the head of ``config`` on ``data['Xtr']``; call ``report(score, step)`` as it learns.

    Used by the trials and by the final refit: same code, same seed, same score.
    """
    Xtr, ytr, Xva, yva, classes = data["Xtr"], data["ytr"], data["Xva"], data["yva"], data["classes"]
    head = make_head(config, max_epochs, max_rounds, threads, data.get("l2_normalize", True))
    fam = config["family"]
    score = None
    if fam == "mlp":
        best = -1.0
        for epoch in head.fit_epochs(Xtr, ytr, classes=np.arange(len(classes))):
            score = _score(head, Xva, yva, classes)
            best = max(best, score)
            if report:
                report(score, epoch)
    elif fam == "xgboost":
        import xgboost as xgb

        # Steps are shares of the budget, in MLP epochs: round r reports step r*max_epochs/max_rounds,
        # so ASHA compares an XGBoost trial and an MLP trial at the same fraction of their budget.
        every = max(1, max_rounds // max_epochs)
        Dva = xgb.DMatrix(np.asarray(Xva, np.float32))

        class _Report(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                r = epoch + 1
                if report and r % every == 0 and r < max_rounds:
                    p = model.predict(Dva, iteration_range=(0, r))
                    p = p if p.ndim == 2 else np.column_stack([1 - p, p])
                    report(metrics.classification_metrics(yva, head.classes_[p.argmax(1)], classes)
                           ["balanced_accuracy"], max(1, round(r * max_epochs / max_rounds)))
                return False

        head.fit(Xtr, ytr, callbacks=[_Report()])
        score = _score(head, Xva, yva, classes)
        if report:
            report(score, max_epochs)
    else:
        head.fit(Xtr, ytr)
        score = _score(head, Xva, yva, classes)
        if report:
            report(score, 1)
    return head, score


def _trial_progress(total: int):
    """A Tune callback: ``tune: done/total trials`` on stderr as trials finish."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def __init__(self):
            self.progress = Progress("tune", total, "trials")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.progress.update(1)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.progress.update(1)

        def on_experiment_end(self, trials, **info):
            self.progress.close()

    return TrialProgress()


def _trial_dirname(trial) -> str:
    return f"{trial.config.get('family', 'trial')}_{trial.trial_id}"


def _trainable(config, data=None, max_epochs=50, max_rounds=200, threads=1):
    from ray import tune

    def report(score, step):
        tune.report({"balanced_accuracy": float(score), "step": int(step)})

    if "folds" in data:  # few labelled tiles: the mean over cross-validation folds, reported once
        scores = [fit_head(config, {**data, **fold}, max_epochs, max_rounds, threads=threads)[1]
                  for fold in data["folds"]]
        report(float(np.mean(scores)), max_epochs)
        return
    fit_head(config, data, max_epochs, max_rounds, report, threads)


def store_data(cfg: TuneConfig):
    """Trials' data from labelled tiles of an embedding store: stratified folds over the
    drawn tiles; the other labelled tiles are the test."""
    from sklearn.model_selection import StratifiedKFold

    lt = labelled_tiles(cfg)
    feats, X, emb = store_features(lt, cfg.features)
    used = np.array(sorted(set(lt.y[lt.train].tolist())))
    yk = np.searchsorted(used, lt.y[lt.train])
    n_folds = min(cfg.folds, int(np.bincount(yk).min()))
    if n_folds < 2:
        raise ConfigError(f"A class has {int(np.bincount(yk).min())} labelled tile(s); cross-validation needs at least 2 "
                          "per class.", "label more tiles of that class, or raise --per-class.")
    Xtr = X[lt.train]
    folds = [{"Xtr": Xtr[a], "ytr": yk[a], "Xva": Xtr[b], "yva": yk[b]}
             for a, b in StratifiedKFold(n_folds, shuffle=True, random_state=cfg.seed).split(Xtr, yk)]
    held = lt.held_out
    held = held[np.isin(lt.y[held], used)]  # a class the heads never saw cannot be scored
    data = {"Xtr": Xtr, "ytr": yk, "Xva": Xtr, "yva": yk, "folds": folds,
            "Xte": X[held], "yte": np.searchsorted(used, lt.y[held]), "classes": [lt.classes[i] for i in used],
            "l2_normalize": cfg.features == "embedding"}
    return data, {"lt": lt, "feats": feats, "emb": emb, "used": used, "folds": n_folds}


def prepare_data(X, y, split, classes, val_fraction: float, seed: int) -> dict:
    train = split == "train"
    Xt, yt = X[train], y[train]
    val = patches.stratified_split(yt, val_fraction, seed)
    return {"Xtr": Xt[~val], "ytr": yt[~val], "Xva": Xt[val], "yva": yt[val],
            "Xte": X[split == "test"], "yte": y[split == "test"], "classes": classes}


def _quiet_tune() -> None:
    """Tune's own lines stay off the terminal unless -v: its new output engine prints a table
    of the experiment and where its results are whatever ``verbose`` says (its older reporter,
    at verbose 0, prints nothing), and Optuna announces each study; the trials' progress line
    (``_trial_progress``) and the summary say what a person needs."""
    import logging
    import os

    if not logging.getLogger("raylib").isEnabledFor(logging.INFO):
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        logging.getLogger("optuna").setLevel(logging.WARNING)


def run_tune(cfg: TuneConfig, argv: list[str] | None = None) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    t0 = time.time()
    families = cfg.families or list(FAMILIES)
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        raise ConfigError(f"Unknown head families {bad}.", f"use some of {list(FAMILIES)}.")
    if cfg.labels:
        data, store = store_data(cfg)
    else:
        X, y, split, classes, meta, _ = read_embeddings(cfg.data)
        data, store = prepare_data(X, y, split, classes, cfg.val_fraction, cfg.seed), None
    storage.check_bucket(cfg.out)
    ensure_ray(cfg.ray_address)
    _quiet_tune()
    max_t = cfg.max_epochs  # XGBoost rounds are reported in the same units (see fit_head)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, data=data, max_epochs=cfg.max_epochs, max_rounds=cfg.max_rounds,
                             threads=max(1, int(cfg.cpus_per_trial))),
        {"cpu": cfg.cpus_per_trial})
    space = search_space(families)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            # every family's defaults are tried first, so each family is measured at least once
            search_alg=OptunaSearch(metric="balanced_accuracy", mode="max", seed=cfg.seed,
                                    points_to_evaluate=default_points(families)),
            scheduler=ASHAScheduler(time_attr="step", metric="balanced_accuracy", mode="max", max_t=max_t,
                                    grace_period=cfg.grace_period, reduction_factor=3),
            num_samples=cfg.trials,
            max_concurrent_trials=cfg.max_concurrent_trials,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(name=cfg.name, storage_path=cfg.storage_path or storage.join(cfg.out, "_tune"),
                                  verbose=0, callbacks=[_trial_progress(cfg.trials)]),
    )
    results = tuner.fit()
    df = results.get_dataframe()
    errors = [str(r.error) for r in results if r.error]
    if len(errors) == len(df) or df.empty:
        raise RuntimeError("every trial failed: " + "; ".join(errors[:3]))
    best = results.get_best_result(metric="balanced_accuracy", mode="max", scope="last")
    best_config = {k: best.config[k] for k in space}
    _write_trials(cfg, df)
    if store is not None:
        return _export_store_head(cfg, data, store, best_config, float(best.metrics["balanced_accuracy"]), len(df),
                                  sorted(df["config/family"].unique().tolist()), argv, t0)
    head, val_score = fit_head(best_config, data, cfg.max_epochs, cfg.max_rounds,
                               threads=max(1, int(cfg.cpus_per_trial)))
    test_metrics = metrics.classification_metrics(data["yte"], head.predict(data["Xte"]), classes)
    val_metrics = metrics.classification_metrics(data["yva"], head.predict(data["Xva"]), classes)

    # the exported head's probabilities are temperature-scaled on the validation rows;
    # its out-of-distribution statistics come from the rows it was fitted on
    temperature = calibration.fit_temperature(head.predict_proba(data["Xva"]), data["yva"])
    ood = calibration.OODScorer.fit(data["Xtr"], data["ytr"])
    test_probs = calibration.apply_temperature(head.predict_proba(data["Xte"]).astype(np.float32), temperature)
    model_uri = storage.join(cfg.out, "model")
    manifest = write_model_dir(
        model_uri, name=f"{cfg.name}-{best_config['family']}", backbone_ref=meta["backbone"],
        input_size=meta["input_size"], head=head, classes=classes, band_mean=meta["band_mean"],
        band_std=meta["band_std"], tile_size=cfg.tile_size, gsd=cfg.gsd,
        metrics={"validation": val_metrics, "test": test_metrics, "best_config": best_config,
                 "best_trial_score": float(best.metrics["balanced_accuracy"]),
                 "embeddings": cfg.store or cfg.data},
        created_by=created_by(argv), temperature=temperature, ood=ood)
    summary = {
        "out": cfg.out, "model": model_uri, "model_id": manifest.id, "trials": len(df),
        "families": sorted(df["config/family"].unique().tolist()),
        "best_config": best_config, "best_trial_score": float(best.metrics["balanced_accuracy"]),
        "refit_validation_score": float(val_score), "test": test_metrics,
        "seconds": round(time.time() - t0, 1),
    }

    te = split == "test"
    write_report(cfg.out, f"{manifest.id} (best of {len(df)} trials) on the test split", test_metrics,
                 X[te], y[te], classes, {"best_config": best_config, "trials": len(df),
                                         "best_trial_score": summary["best_trial_score"],
                                         "refit_validation_score": summary["refit_validation_score"],
                                         "model": model_uri, "embeddings": cfg.store or cfg.data, "temperature": temperature},
                 probs=test_probs)
    storage.write_bytes(storage.join(cfg.out, "summary.json"), json.dumps(summary, indent=2).encode())
    return summary


def _write_trials(cfg: TuneConfig, df) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    keep = [c for c in df.columns if c.startswith("config/") or c in (
        "trial_id", "balanced_accuracy", "step", "training_iteration", "time_total_s")]
    table = pa.Table.from_pandas(df[keep].rename(columns=lambda c: c.replace("config/", "")), preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(storage.join(cfg.out, "trials.parquet"), buf.getvalue())


def _export_store_head(cfg: TuneConfig, data: dict, store: dict, best_config: dict, best_score: float, trials: int,
                       families: list[str], argv, t0: float) -> dict:
    """Refit the best configuration on every drawn tile; export it as a head of the store
    (its features, training tiles and preprocessing, like train-head --store)."""

    threads = max(1, int(cfg.cpus_per_trial))
    head, _ = fit_head(best_config, data, cfg.max_epochs, cfg.max_rounds, threads=threads)
    classes = data["classes"]
    test_metrics = (metrics.classification_metrics(data["yte"], head.predict(data["Xte"]), classes)
                    if len(data["yte"]) else None)
    temperature = oof_temperature(
        lambda: make_head(best_config, cfg.max_epochs, cfg.max_rounds, threads, data["l2_normalize"]),
        data["Xtr"], data["ytr"], cfg.seed) or 1.0
    lt = store["lt"]
    model_uri = storage.join(cfg.out, "model")
    scores = {"labelled_tiles": lt.counts, "labels": cfg.labels, "crosswalk": cfg.crosswalk, "not_used": lt.unused,
              "per_class": cfg.per_class, "seed": cfg.seed, "features": cfg.features, "embeddings": cfg.store or cfg.data,
              "best_config": best_config, "cv_folds": store["folds"], "best_trial_score": best_score,
              "test": test_metrics, "test_rows": "labelled tiles of the store not drawn for training"}
    manifest = write_store_head(model_uri, lt, head, store["used"], store["feats"], store["emb"][lt.train],
                                name=f"{cfg.name}-{best_config['family']}", metrics=scores,
                                temperature=temperature, argv=argv)
    summary = {"out": cfg.out, "model": model_uri, "model_id": manifest.id, "trials": trials, "families": families,
               "best_config": best_config, "best_trial_score": best_score, "cv_folds": store["folds"],
               "labelled_tiles": lt.counts, "test": test_metrics, "test_tiles": int(len(data["yte"])),
               "seconds": round(time.time() - t0, 1)}
    storage.write_bytes(storage.join(cfg.out, "summary.json"), json.dumps(summary, indent=2).encode())
    return summary
