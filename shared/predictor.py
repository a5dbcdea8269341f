"""Tree-ensemble predictors: evaluators compiled from the bundle's trees, and XGBoost itself.

XGBoost's `inplace_predict` has a fixed cost per call that dwarfs the work of a small request, so small
batches go through evaluators compiled from the trees instead (`RoutedPredictor.predict` says which one
answers when). Both are verified against XGBoost when a bundle is published and again when the function
loads it.
"""
from __future__ import annotations

import io
import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shared.validation import FeatureBatch

# How margins become outputs: class probabilities (multi:softprob) or the margin itself (reg:squarederror)
LINKS = {"multi:softprob": "softmax", "reg:squarederror": "identity"}


def softmax(margin: np.ndarray, axis: int = 1) -> np.ndarray:
    """Class probabilities of margins along `axis` (float64; the input is not changed)."""
    z = np.asarray(margin, dtype=np.float64) - margin.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


class TreeEnsemble:
    """An XGBoost model as flat node arrays: a generated function per row, NumPy per batch.

    Its outputs are class probabilities for a multi:softprob model (softmax link) and the margin for a
    reg:squarederror model (identity link), one column per output group.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.feature = arrays["feature"].astype(np.intp)
        self.threshold = arrays["threshold"].astype(np.float32)
        self.children = arrays["children"].astype(np.intp)  # (nodes, 2): [left, right]; a leaf points to itself
        self.default_left = arrays["default_left"].astype(bool)
        self.leaf_value = arrays["leaf_value"].astype(np.float32)
        self.roots = arrays["roots"].astype(np.intp)
        tree_class = arrays["tree_class"].astype(np.intp)
        self.base_margin = arrays["base_margin"].astype(np.float32)
        self.link = str(arrays["link"]) if "link" in arrays else "softmax"
        if self.link not in LINKS.values():
            raise ValueError(f"unknown link {self.link}")
        self.n_classes = int(self.base_margin.shape[0])
        self.depth = int(arrays["depth"])
        # each node's training cover (XGBoost's sum_hessian): what TreeSHAP weighs unknown branches by
        self.cover = arrays["cover"].astype(np.float64) if "cover" in arrays else None
        self._shap: _ShapTables | None = None
        self.class_matrix = np.zeros((self.roots.shape[0], self.n_classes), dtype=np.float32)
        self.class_matrix[np.arange(self.roots.shape[0]), tree_class] = 1.0
        self._predict_one = _compile_single_row(self)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """Index of the leaf each row reaches in each tree, shape (rows, trees)."""
        n = x.shape[0]
        idx = np.broadcast_to(self.roots, (n, self.roots.shape[0]))
        rows = np.arange(n)[:, None]
        has_nan = bool(np.isnan(x).any())
        for _ in range(self.depth):
            value = x[rows, self.feature[idx]]
            go_right = ~(value < self.threshold[idx])
            if has_nan:
                missing = np.isnan(value)
                go_right = np.where(missing, ~self.default_left[idx], go_right)
            idx = self.children[idx, go_right.view(np.int8)]
        return idx

    def predict_one(self, row: list[float]) -> list[float]:
        """The outputs of one row (float32 values as Python floats; NaN means missing)."""
        return self._predict_one(row)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The outputs of float32 rows (NaN means missing), shape (rows, outputs)."""
        if x.shape[0] == 1:
            return np.array([self.predict_one(x[0].tolist())])  # float32 values, exactly as XGBoost sees them
        margin = (self.leaf_value[self.leaves(x)] @ self.class_matrix + self.base_margin).astype(np.float64)
        return softmax(margin) if self.link == "softmax" else margin

    @property
    def explains(self) -> bool:
        """Whether `contributions` can answer: the node covers are known and the trees shallow enough."""
        return self.cover is not None and self.depth <= SHAP_MAX_DEPTH

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP values of float32 rows in margin space, as XGBoost's pred_contribs gives them:
        (rows, outputs, columns + 1), the bias last. Only when `explains`."""
        if self._shap is None:
            self._shap = _ShapTables(self)
        return self._shap.contributions(x)

    def max_difference(self, x: np.ndarray, expected: np.ndarray) -> float:
        """Largest gap between `expected` probabilities (XGBoost's) and either evaluator's, row by row or batched."""
        one_by_one = np.array([self.predict_one(row) for row in x.tolist()])
        expected = np.asarray(expected, dtype=np.float64).reshape(len(x), -1)
        return max(float(np.abs(self.outputs(x) - expected).max()), float(np.abs(one_by_one - expected).max()))

    def to_bytes(self) -> bytes:
        """Serialise as an .npz file for the bundle."""
        buf = io.BytesIO()
        tree_class = self.class_matrix.argmax(axis=1)
        np.savez(buf, feature=self.feature.astype(np.int32), threshold=self.threshold,
                 children=self.children.astype(np.int32), default_left=self.default_left,
                 leaf_value=self.leaf_value, roots=self.roots.astype(np.int32),
                 tree_class=tree_class.astype(np.int32), base_margin=self.base_margin,
                 depth=np.int32(self.depth), link=np.array(self.link),
                 **({} if self.cover is None else {"cover": self.cover.astype(np.float32)}))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TreeEnsemble:
        """Load from the bytes written by `to_bytes` (no pickle: plain arrays only)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return cls({name: npz[name] for name in npz.files})

    @classmethod
    def from_xgboost_json(cls, model_json: bytes | str) -> TreeEnsemble:
        """Compile from `Booster.save_raw("json")`; numeric splits, multi:softprob or reg:squarederror only."""
        learner = json.loads(model_json)["learner"]
        objective = learner["objective"]["name"]
        if objective not in LINKS:
            raise ValueError(f"unsupported objective {objective}")
        model = learner["gradient_booster"]["model"]
        n_classes = max(1, int(learner["learner_model_param"]["num_class"]))
        base = learner["learner_model_param"]["base_score"]
        base_margin = np.array(json.loads(base) if base.startswith("[") else [float(base)] * n_classes,
                               dtype=np.float32)
        features, thresholds, children, default_left, leaf_values, roots, cover = [], [], [], [], [], [], []
        offset, depth = 0, 0
        for tree in model["trees"]:
            if any(tree["split_type"]):
                raise ValueError("categorical splits are not supported")
            left, right = tree["left_children"], tree["right_children"]
            roots.append(offset)
            depth = max(depth, _tree_depth(left, right))
            for node, (lc, rc) in enumerate(zip(left, right)):
                leaf = lc == -1
                features.append(0 if leaf else tree["split_indices"][node])
                thresholds.append(tree["split_conditions"][node])
                children.append((offset + node, offset + node) if leaf else (offset + lc, offset + rc))
                default_left.append(bool(tree["default_left"][node]))
                leaf_values.append(tree["split_conditions"][node] if leaf else 0.0)
            cover += tree["sum_hessian"]
            offset += len(left)
        arrays = {
            "feature": np.array(features), "threshold": np.array(thresholds, dtype=np.float32),
            "children": np.array(children), "default_left": np.array(default_left),
            "leaf_value": np.array(leaf_values, dtype=np.float32), "roots": np.array(roots),
            "tree_class": np.array(model["tree_info"]), "base_margin": base_margin, "depth": np.array(depth),
            "link": np.array(LINKS[objective]), "cover": np.array(cover, dtype=np.float32),
        }
        return cls(arrays)


SHAP_MAX_DEPTH = 6  # deeper paths are left to XGBoost (the table below grows as 2 ** depth per leaf)
_SHAP_CHUNK = 1 << 18  # at most this many (row, leaf) pairs at once


class _ShapTables:
    """Path-dependent TreeSHAP, leaf by leaf, in NumPy: XGBoost's pred_contribs without XGBoost.

    TreeSHAP's value of a coalition S of features is, for each leaf, its value times one factor per feature
    split on along its path: o (does the row follow the path there: 1 or 0) when the feature is in S, else z
    (the share of the node's training cover that the path takes). A feature split on twice multiplies its
    factors. Such a product game has Shapley values in closed form: feature j of a path of d features gets
    value * (o_j - z_j) * sum over s of w(s) * e_s, where e_s sums the products of o over s of the other
    features and z over the rest (the coefficients of prod over i != j of (z_i + o_i t)), and
    w(s) = s! (d - 1 - s)! / d!. Paths shorter than the deepest get neutral players (o = z = 1, who change
    no one's value). The z are fixed by the model and each o is 0 or 1, so every leaf's values for each of
    the 2 ** d patterns of o are tabulated once; a row then only finds its pattern at every leaf.
    """

    def __init__(self, trees: TreeEnsemble) -> None:
        depth = max(1, trees.depth)
        steps, players, value, leaf_class, player_columns = [], [], [], [], []  # per leaf
        n_columns = int(trees.feature.max()) + 1 if trees.feature.size else 1
        tree_class = trees.class_matrix.argmax(axis=1).tolist()
        children, cover, feature = trees.children, trees.cover, trees.feature.tolist()
        for t, root in enumerate(trees.roots.tolist()):
            stack = [(root, [])]
            while stack:
                node, path = stack.pop()
                left, right = int(children[node, 0]), int(children[node, 1])
                if left != node:
                    stack += [(left, path + [(node, 0)]), (right, path + [(node, 1)])]
                    continue
                features = list(dict.fromkeys(feature[n] for n, _ in path))
                padding = depth - len(path)
                steps.append(path + [(-1, 0)] * padding)
                players.append([features.index(feature[n]) for n, _ in path] + [depth] * padding)
                value.append(float(trees.leaf_value[node]))
                leaf_class.append(tree_class[t])
                player_columns.append([tree_class[t] * n_columns + f for f in features])  # output's column
        n_leaves = len(steps)
        node = np.array([[n for n, _ in path] for path in steps], dtype=np.intp)  # (leaves, depth), -1: padding
        real = node >= 0
        node = np.where(real, node, 0)
        side = np.array([[s for _, s in path] for path in steps], dtype=np.intp)
        self.feature, self.threshold = trees.feature[node], trees.threshold[node]
        self.default_left, self.goes_left = trees.default_left[node], side == 0
        self.player_bit = np.where(real, 1 << np.array(players), 0)  # padding steps never break a pattern
        parent = cover[node]
        share = cover[children[node, side]] / np.where(parent > 0, parent, 1.0)
        z = np.ones((n_leaves, depth + 1))  # per player: the product of its steps' shares
        for step in range(depth):
            z[np.arange(n_leaves), np.array(players)[:, step]] *= np.where(real[:, step], share[:, step], 1.0)
        z = z[:, :depth]
        patterns = (np.arange(2 ** depth)[:, None] >> np.arange(depth)) & 1  # (patterns, players) of o
        self.table = _product_game_shapley(patterns[:, None, :].astype(np.float64), z) * np.array(value)[None, :, None]
        self.table = np.ascontiguousarray(self.table.transpose(1, 0, 2))  # (leaves, patterns, players)
        self.full = 2 ** depth - 1
        self.n_columns, self.n_outputs = n_columns, trees.n_classes
        self.to_columns = np.zeros((n_leaves * depth, self.n_outputs * n_columns))
        for leaf, columns in enumerate(player_columns):
            for p, column in enumerate(columns):
                self.to_columns[leaf * depth + p, column] = 1.0
        self.bias = trees.base_margin.astype(np.float64).copy()  # every feature unknown: cover-weighted means
        np.add.at(self.bias, leaf_class, z.prod(axis=1) * np.array(value))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(rows, outputs, columns + 1) margin attributions of float32 rows, bias last (TreeEnsemble.contributions)."""
        if x.shape[1] < self.n_columns:
            raise ValueError(f"rows have {x.shape[1]} columns, the trees split on column {self.n_columns - 1}")
        out = np.empty((x.shape[0], self.n_outputs, x.shape[1] + 1))
        leaves = np.arange(self.table.shape[0])
        step = max(1, _SHAP_CHUNK // self.table.shape[0])
        for start in range(0, x.shape[0], step):
            value = x[start:start + step, self.feature]  # (rows, leaves, depth)
            left = (value < self.threshold) | (np.isnan(value) & self.default_left)
            broken = np.bitwise_or.reduce(np.where(left == self.goes_left, 0, self.player_bit), axis=2)
            phi = self.table[leaves, self.full & ~broken]  # (rows, leaves, players)
            flat = phi.reshape(phi.shape[0], -1) @ self.to_columns
            out[start:start + step, :, :self.n_columns] = flat.reshape(-1, self.n_outputs, self.n_columns)
        out[:, :, self.n_columns:-1] = 0.0
        out[:, :, -1] = self.bias
        return out


def _product_game_shapley(o: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Shapley values of the games prod over players of (o_i if i in S else z_i): (..., players)."""
    depth = z.shape[-1]
    o, z = np.broadcast_arrays(o, z)
    weights = [math.factorial(k) * math.factorial(depth - 1 - k) / math.factorial(depth) for k in range(depth)]
    phi = np.empty(o.shape)
    for j in range(depth):
        coefficients = [np.ones(o.shape[:-1])]  # of prod over i != j of (z_i + o_i t), lowest degree first
        for i in range(depth):
            if i != j:
                raised = [c * o[..., i] for c in coefficients]
                coefficients = [c * z[..., i] for c in coefficients] + [np.zeros(o.shape[:-1])]
                for k, c in enumerate(raised):
                    coefficients[k + 1] += c
        phi[..., j] = (o[..., j] - z[..., j]) * sum(w * c for w, c in zip(weights, coefficients))
    return phi


MAX_COMPILED_DEPTH = 32  # deeper trees would nest expressions beyond what CPython's compiler accepts


def _compile_single_row(trees: TreeEnsemble) -> Callable[[list[float]], list[float]]:
    """The ensemble as one generated Python function of a row: nested conditional expressions per tree.

    Like treelite, but to Python: the interpreter runs straight-line comparisons instead of a loop that
    indexes node lists at every step. The source is built only from the arrays' ints and float reprs, so
    no text from a bundle reaches `exec`. NaN fails every comparison, so the condition is written to send
    it the split's default way.
    """
    if trees.depth > MAX_COMPILED_DEPTH:
        raise ValueError(f"trees of depth {trees.depth} are deeper than {MAX_COMPILED_DEPTH}")
    feature, left, right = trees.feature.tolist(), trees.children[:, 0].tolist(), trees.children[:, 1].tolist()
    # float32 values as Python floats: comparisons and sums then match XGBoost's float32 inputs exactly
    threshold, leaf = trees.threshold.astype(np.float64).tolist(), trees.leaf_value.astype(np.float64).tolist()
    default_left = trees.default_left.tolist()

    def expression(node: int) -> str:
        if left[node] == node:  # a leaf points to itself
            return repr(leaf[node])
        x, t = f"x{feature[node]}", repr(threshold[node])
        goes_left = f"not {x} >= {t}" if default_left[node] else f"{x} < {t}"
        return f"({expression(left[node])} if {goes_left} else {expression(right[node])})"

    lines = [f"    x{f} = row[{f}]" for f in sorted(set(feature))]
    lines += [f"    m{c} = {base!r}" for c, base in enumerate(trees.base_margin.astype(np.float64).tolist())]
    lines += [f"    m{cls} += {expression(root)}"
              for root, cls in zip(trees.roots.tolist(), trees.class_matrix.argmax(axis=1).tolist())]
    margins = ", ".join(f"m{c}" for c in range(trees.n_classes))
    link = [f"    top = max({margins})", f"    exps = [exp(m - top) for m in ({margins},)]", "    total = sum(exps)",
            "    return [e / total for e in exps]"] if trees.link == "softmax" else [f"    return [{margins}]"]
    source = "\n".join(["def predict_one(row):", *lines, *link])
    namespace = {"exp": math.exp, "inf": math.inf, "nan": math.nan}
    try:
        exec(compile(source, "<tree ensemble>", "exec"), namespace)  # noqa: S102 - numbers only, see docstring
    except (SyntaxError, RecursionError, MemoryError) as exc:  # a model too large to compile
        raise ValueError(f"cannot compile the trees: {type(exc).__name__}") from None
    return namespace["predict_one"]


def _tree_depth(left: list[int], right: list[int]) -> int:
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, level = stack.pop()
        if left[node] == -1:
            deepest = max(deepest, level)
        else:
            stack += [(left[node], level + 1), (right[node], level + 1)]
    return deepest


class BoosterPredictor:
    """XGBoost's own predictor, imported and loaded on first use.

    Importing XGBoost and loading the booster costs start-up time and memory that a process answering
    only small requests never needs, so neither happens until a batch is too large for the compiled trees.
    """

    def __init__(self, model_bytes: bytes) -> None:
        self._model_bytes = model_bytes
        self._booster = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._booster is None:
                import xgboost  # noqa: PLC0415 - deliberately lazy, see class docstring

                booster = xgboost.Booster()
                booster.load_model(bytearray(self._model_bytes))
                booster.set_param({"nthread": os.cpu_count() or 1})  # large batches only: use every core
                self._booster = booster
        return self._booster

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, or a regressor's margin, from XGBoost's in-place prediction: (rows, outputs)."""
        return np.asarray(self._load().inplace_predict(x), dtype=np.float64).reshape(x.shape[0], -1)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """XGBoost's exact TreeSHAP values of float32 rows in margin space: (rows, outputs, columns + 1), bias last."""
        booster = self._load()
        import xgboost  # noqa: PLC0415 - already imported by _load; see class docstring

        contribs = booster.predict(xgboost.DMatrix(x, missing=np.nan), pred_contribs=True)
        return np.asarray(contribs, dtype=np.float64).reshape(x.shape[0], -1, x.shape[1] + 1)


class RoutedPredictor:
    """Sends each batch to the cheapest verified evaluator; `predict` says which one answers when."""

    def __init__(self, fast: TreeEnsemble | None, booster: BoosterPredictor, fast_max_rows: int) -> None:
        self.fast = fast
        self.booster = booster
        self.fast_max_rows = fast_max_rows

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """A float32 matrix's outputs, from the NumPy walk or XGBoost as `predict` describes."""
        if self.fast is not None and x.shape[0] <= self.fast_max_rows:
            return self.fast.outputs(x)
        return self.booster.outputs(x)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP margin attributions (rows, outputs, columns + 1), bias last: NumPy for the verified
        compiled trees when they are shallow enough, else XGBoost."""
        if self.fast is not None and self.fast.explains:
            return self.fast.contributions(x)
        return self.booster.contributions(x)

    def predict(self, batch: FeatureBatch) -> Probabilities:
        """Class probabilities of a validated batch, from one of three evaluators chosen by its size.

        - Rows that `build_batch` kept as Python lists (batches of up to `shared.validation.SMALL_BATCH`
          rows), when there are no more than `fast_max_rows` of them: one by one through the Python
          function generated from the trees, with no NumPy call at all, since NumPy's fixed cost per
          call would outweigh the work of so few rows. The single-row request, the common one, takes
          this path.
        - Up to `fast_max_rows` rows (the `fast_predictor_max_rows` setting): the NumPy walk of every
          tree at once, one level per step, whose per-call cost is shared by the whole batch.
        - More rows, or any batch when the compiled evaluators are missing or failed verification:
          XGBoost, whose larger fixed cost per call its multithreaded C++ repays on large batches.

        Whatever the evaluator, the answer is a `Probabilities`: Python lists from the first, an array
        from the others, each kept in the form its evaluator made.
        """
        rows = batch.rows
        if self.fast is not None and rows is not None and len(rows) <= self.fast_max_rows:
            predict_one = self.fast.predict_one
            return Probabilities([predict_one(row) for row in rows])
        return Probabilities(array=self.outputs(batch.matrix))


@dataclass(slots=True)
class Probabilities:
    """Class probabilities of a batch: one row per input row, one column per class, in label order.

    Exactly one of `rows` (Python lists, from rows predicted one by one) and `array` (float64, from the
    batched evaluators) is set, in the form its evaluator produced. An answer needs each row's top class
    and rounded values, which plain Python computes faster for a few rows and NumPy for many, so a
    conversion either way would only add cost. Not to be modified once made.
    """

    rows: list[list[float]] | None = None
    array: np.ndarray | None = None

    def labels_and_rows(self, labels: tuple[str, ...], digits: int) -> tuple[list[str], list[list[float]]]:
        """Each row's most probable label (the first one on a tie), and its probabilities rounded to `digits`."""
        rows = self.rows
        if rows is not None:
            return [labels[p.index(max(p))] for p in rows], [[round(v, digits) for v in p] for p in rows]
        return (np.asarray(labels, dtype=object)[self.array.argmax(axis=1)].tolist(),
                np.round(self.array, digits).tolist())


def _group_index(row: list[float], columns: tuple[int, ...]) -> int:
    """Which level of a one-hot group a row has (-1: missing or never seen in training)."""
    for i, column in enumerate(columns):
        if row[column] == 1.0:
            return i
    return -1


def _group_indices(x: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    if not columns:
        return np.full(x.shape[0], -1)
    block = x[:, list(columns)] == 1.0
    return np.where(block.any(axis=1), block.argmax(axis=1), -1)


@dataclass(frozen=True)
class Baseline:
    """A regressor's model-free scale: log b(x) = intercept[level of a group] + sum of beta_j * log(x_j).

    The trees learn log(y / b(x)), so a prediction is b(x) * exp(trees): it follows its inputs beyond the
    targets seen in training instead of stopping at the largest one, as trees alone would.
    """

    columns: tuple[int, ...]
    betas: tuple[float, ...]
    group_columns: tuple[int, ...]  # the one-hot columns of the group feature, in level order
    intercepts: tuple[float, ...]  # one per group level
    pooled_intercept: float  # for a missing or unseen group level

    def log_one(self, row: list[float]) -> float:
        level = _group_index(row, self.group_columns)
        total = self.intercepts[level] if level >= 0 else self.pooled_intercept
        for column, beta in zip(self.columns, self.betas):
            total += beta * math.log(row[column])
        return total

    def log_batch(self, x: np.ndarray) -> np.ndarray:
        levels = _group_indices(x, self.group_columns)
        intercepts = np.append(np.asarray(self.intercepts, dtype=np.float64), self.pooled_intercept)
        total = intercepts[levels]  # -1 picks the pooled intercept appended last
        for column, beta in zip(self.columns, self.betas):
            total = total + beta * np.log(x[:, column].astype(np.float64))
        return total

    @classmethod
    def from_dict(cls, data: dict) -> Baseline:
        return cls(tuple(data["columns"]), tuple(data["betas"]), tuple(data["group_columns"]),
                   tuple(data["intercepts"]), float(data["pooled_intercept"]))


@dataclass(frozen=True)
class Interval:
    """A split-conformal half-width on the log scale, per level of the baseline's group (or pooled)."""

    level: float
    group_columns: tuple[int, ...]
    q: tuple[float, ...]
    q_pooled: float

    def one(self, row: list[float]) -> float:
        level = _group_index(row, self.group_columns)
        return self.q[level] if level >= 0 else self.q_pooled

    def batch(self, x: np.ndarray) -> np.ndarray:
        return np.append(np.asarray(self.q, dtype=np.float64), self.q_pooled)[_group_indices(x, self.group_columns)]

    @classmethod
    def from_dict(cls, data: dict) -> Interval:
        return cls(float(data["level"]), tuple(data["group_columns"]), tuple(data["q"]), float(data["q_pooled"]))


@dataclass(frozen=True)
class Member:
    """One regime of a regressor: the rows it serves (those with every `needs` column present) and its trees."""

    name: str
    needs: tuple[int, ...]
    predictor: RoutedPredictor
    baseline: Baseline
    interval: Interval


@dataclass(slots=True)
class Estimates:
    """A regressor's answers: value, interval bounds and the regime that answered, one per row.

    Values and bounds are Python lists from rows predicted one by one, float64 arrays from the batched
    evaluators (as for `Probabilities`, each kept in the form its evaluator made).
    """

    values: list[float] | np.ndarray
    lower: list[float] | np.ndarray
    upper: list[float] | np.ndarray
    regimes: list[str]

    def rounded(self, digits: int) -> tuple[list[float], list[float], list[float]]:
        """Values, lower and upper bounds rounded to `digits` decimals, as Python lists."""
        if isinstance(self.values, np.ndarray):
            return tuple(np.round(a, digits).tolist() for a in (self.values, self.lower, self.upper))
        return tuple([round(v, digits) for v in a] for a in (self.values, self.lower, self.upper))

    def intervals(self) -> list | np.ndarray:
        """[lower, upper] per row."""
        if isinstance(self.lower, np.ndarray):
            return np.column_stack((self.lower, self.upper))
        return list(zip(self.lower, self.upper))


class RegressionPredictor:
    """Each row goes to the first member whose needed inputs it has; the last member needs none."""

    def __init__(self, members: tuple[Member, ...]) -> None:
        if not members or members[-1].needs:
            raise ValueError("a regressor needs members, the last of which serves every row")
        self.members = members

    def member_of(self, row: list[float]) -> Member:
        for member in self.members:
            if all(row[c] == row[c] for c in member.needs):  # NaN != NaN: a missing input
                return member
        return self.members[-1]

    def predict(self, batch: FeatureBatch) -> Estimates:
        """Values and intervals of a validated batch; a few rows in plain Python, more through NumPy or XGBoost."""
        rows = batch.rows
        if rows is not None and all(m.predictor.fast is not None for m in self.members) \
                and len(rows) <= self.members[0].predictor.fast_max_rows:
            out = Estimates([], [], [], [])
            for row in rows:
                member = self.member_of(row)
                centre = member.baseline.log_one(row) + member.predictor.fast.predict_one(row)[0]
                q = member.interval.one(row)
                out.values.append(math.exp(centre))
                out.lower.append(math.exp(centre - q))
                out.upper.append(math.exp(centre + q))
                out.regimes.append(member.name)
            return out
        x = batch.matrix
        chosen = np.full(x.shape[0], len(self.members) - 1)
        for i in reversed(range(len(self.members) - 1)):
            needs = list(self.members[i].needs)
            chosen[~np.isnan(x[:, needs]).any(axis=1)] = i
        centre, q = np.empty(x.shape[0]), np.empty(x.shape[0])
        for i, member in enumerate(self.members):
            rows_i = np.flatnonzero(chosen == i)
            if rows_i.size:
                xi = x[rows_i]
                centre[rows_i] = member.baseline.log_batch(xi) + member.predictor.outputs(xi)[:, 0]
                q[rows_i] = member.interval.batch(xi)
        names = np.asarray([m.name for m in self.members], dtype=object)
        return Estimates(np.exp(centre), np.exp(centre - q), np.exp(centre + q), names[chosen].tolist())
