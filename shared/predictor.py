"""Tree-ensemble predictors: evaluators compiled from the bundle's trees, and XGBoost itself.

XGBoost's `inplace_predict` has a fixed cost per call that dwarfs the work of a small request, so small
batches go through evaluators compiled from the trees instead (`RoutedPredictor.predict` says which one
answers when). Both are verified against XGBoost when a bundle is published and again when the function
loads it.

Three kinds of model: a multi-class classifier (multi:softprob: one column per label), a binary classifier
(binary:logistic: P(positive), the positive label last, answered as the two columns [1 - p, p] in label order
so that everything treating a classifier as one column per label keeps working, its label decided by a
threshold on p rather than by the larger column), and a regressor (reg:squarederror members on a log or an
identity scale, with prediction intervals widened to their widest for rows outside the training ranges).
"""
from __future__ import annotations

import io
import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shared.validation import FeatureBatch

# How margins become outputs: class probabilities (multi:softprob), P(positive) (binary:logistic, answered as
# [1 - p, p]) or the margin itself (reg:squarederror)
LINKS = {"multi:softprob": "softmax", "binary:logistic": "logistic", "reg:squarederror": "identity"}


def softmax(margin: np.ndarray, axis: int = 1) -> np.ndarray:
    """Class probabilities of margins along `axis` (float64; the input is not changed)."""
    z = np.asarray(margin, dtype=np.float64) - margin.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def sigmoid(margin: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-margin)) in float64, without overflow for margins of either sign."""
    m = np.asarray(margin, dtype=np.float64)
    e = np.exp(-np.abs(m))
    return np.where(m >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def logistic_base_margin(base_score: float) -> np.float32:
    """The margin XGBoost starts a binary:logistic model from, given the base_score its JSON stores (a probability).

    XGBoost computes -logf(1.0f / base_score - 1.0f) in float32; the quotient and difference are float32 here
    too and the logarithm is taken in float64 and rounded once, which gives XGBoost's value bit for bit for
    all but a rare base_score where glibc's logf is one ulp off the correctly rounded result.
    """
    one, p = np.float32(1.0), np.float32(base_score)
    if not 0.0 < p < 1.0:
        raise ValueError(f"binary:logistic base_score {base_score} is not a probability")
    return np.float32(-math.log(float(one / p - one)))


class TreeEnsemble:
    """An XGBoost model as flat node arrays: a generated function per row, NumPy per batch.

    Its outputs are class probabilities for a multi:softprob model (softmax link), [1 - p, p] with p the
    sigmoid of the margin for a binary:logistic model (logistic link: one margin, two outputs), and the
    margin for a reg:squarederror model (identity link), one column per output group.
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
        self.n_classes = int(self.base_margin.shape[0])  # margins (output groups): 1 for a binary model
        if self.link == "logistic" and self.n_classes != 1:
            raise ValueError(f"a logistic link needs one output group, not {self.n_classes}")
        self.n_outputs = 2 if self.link == "logistic" else self.n_classes  # columns of `outputs`
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
        if self.link == "softmax":
            return softmax(margin)
        if self.link == "logistic":
            p = sigmoid(margin[:, 0])
            return np.column_stack((1.0 - p, p))
        return margin

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
        """Largest gap between `expected` outputs (XGBoost's) and either evaluator's, row by row or batched,
        relative to the output's size where it is above 1 (a regressor's margin may be in the thousands).

        A binary model's expected outputs may be XGBoost's own, P(positive) only ((rows,) or (rows, 1)): they
        are compared with the positive column."""
        one_by_one = np.array([self.predict_one(row) for row in x.tolist()]).reshape(len(x), -1)
        batched = self.outputs(x)
        expected = np.asarray(expected, dtype=np.float64).reshape(len(x), -1)
        if self.link == "logistic" and expected.shape[1] == 1:
            one_by_one, batched = one_by_one[:, 1:], batched[:, 1:]
        if not len(x):
            return 0.0
        # relative beyond 1: float32 trees summed in another order differ by a share of the output's size
        scale = np.maximum(np.abs(expected), 1.0)
        return max(float((np.abs(batched - expected) / scale).max()),
                   float((np.abs(one_by_one - expected) / scale).max()))

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
        """Compile from `Booster.save_raw("json")`; numeric splits, multi:softprob, binary:logistic or
        reg:squarederror only. A binary:logistic base_score is a probability: its margin is the base margin."""
        learner = json.loads(model_json)["learner"]
        objective = learner["objective"]["name"]
        if objective not in LINKS:
            raise ValueError(f"unsupported objective {objective}")
        model = learner["gradient_booster"]["model"]
        n_classes = max(1, int(learner["learner_model_param"]["num_class"]))
        base = learner["learner_model_param"]["base_score"]
        base_values = json.loads(base) if base.startswith("[") else [float(base)] * n_classes
        if objective == "binary:logistic":
            if len(base_values) != 1 or n_classes != 1:
                raise ValueError("a binary:logistic model must have one output")
            base_values = [logistic_base_margin(base_values[0])]
        base_margin = np.array(base_values, dtype=np.float32)
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
    if trees.link == "softmax":
        link = [f"    top = max({margins})", f"    exps = [exp(m - top) for m in ({margins},)]",
                "    total = sum(exps)", "    return [e / total for e in exps]"]
    elif trees.link == "logistic":  # [1 - p, p]; exp of a negative number only, so no overflow
        link = ["    if m0 >= 0.0:", "        p = 1.0 / (1.0 + exp(-m0))", "    else:", "        e = exp(m0)",
                "        p = e / (1.0 + e)", "    return [1.0 - p, p]"]
    else:
        link = [f"    return [{margins}]"]
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

    def __init__(self, model_bytes: bytes, threads: int | None = None) -> None:
        self._model_bytes = model_bytes
        self._threads = threads or os.cpu_count() or 1  # large batches only: every core unless told otherwise
        self._booster = None
        self._binary = False  # binary:logistic: XGBoost gives P(positive) alone, answered as [1 - p, p]
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._booster is None:
                import xgboost  # noqa: PLC0415 - deliberately lazy, see class docstring

                booster = xgboost.Booster()
                booster.load_model(bytearray(self._model_bytes))
                booster.set_param({"nthread": self._threads})
                objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
                self._binary = objective == "binary:logistic"
                self._booster = booster
        return self._booster

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ([1 - p, p] for a binary model), or a regressor's margin, from XGBoost's in-place
        prediction: (rows, outputs)."""
        booster = self._load()
        out = np.asarray(booster.inplace_predict(x), dtype=np.float64).reshape(x.shape[0], -1)
        if self._binary:
            return np.column_stack((1.0 - out[:, 0], out[:, 0]))
        return out

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """XGBoost's exact TreeSHAP values of float32 rows in margin space: (rows, outputs, columns + 1), bias last."""
        booster = self._load()
        import xgboost  # noqa: PLC0415 - already imported by _load; see class docstring

        contribs = booster.predict(xgboost.DMatrix(x, missing=np.nan), pred_contribs=True)
        return np.asarray(contribs, dtype=np.float64).reshape(x.shape[0], -1, x.shape[1] + 1)


class RoutedPredictor:
    """Sends each batch to the cheapest verified evaluator; `predict` says which one answers when.

    `threshold` is a binary classifier's decision threshold on P(positive) (None for any other model): its
    `Probabilities` carry it, so that their labels are decided by it.
    """

    def __init__(self, fast: TreeEnsemble | None, booster: BoosterPredictor, fast_max_rows: int,
                 threshold: float | None = None) -> None:
        self.fast = fast
        self.booster = booster
        self.fast_max_rows = fast_max_rows
        self.threshold = threshold

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

        Whatever the evaluator, the answer is a `Probabilities` (with this predictor's `threshold`): Python
        lists from the first, an array from the others, each kept in the form its evaluator made.
        """
        rows = batch.rows
        if self.fast is not None and rows is not None and len(rows) <= self.fast_max_rows:
            predict_one = self.fast.predict_one
            return Probabilities([predict_one(row) for row in rows], None, self.threshold)
        return Probabilities(None, self.outputs(batch.matrix), self.threshold)


@dataclass(slots=True)
class Probabilities:
    """Class probabilities of a batch: one row per input row, one column per class, in label order.

    Exactly one of `rows` (Python lists, from rows predicted one by one) and `array` (float64, from the
    batched evaluators) is set, in the form its evaluator produced. An answer needs each row's top class
    and rounded values, which plain Python computes faster for a few rows and NumPy for many, so a
    conversion either way would only add cost. Not to be modified once made.

    `threshold` is set for a binary classifier (two columns, the positive label last): a row's label is the
    positive one iff its P(positive), unrounded, is at least the threshold. Otherwise the most probable label.
    """

    rows: list[list[float]] | None = None
    array: np.ndarray | None = None
    threshold: float | None = None

    def labels(self, labels: tuple[str, ...]) -> list[str]:
        """Each row's predicted label: by the threshold for a binary classifier, else the most probable one
        (the first on a tie)."""
        rows, threshold = self.rows, self.threshold
        if threshold is not None:
            negative, positive = labels[0], labels[1]
            if rows is not None:
                return [positive if p[1] >= threshold else negative for p in rows]
            chosen = (self.array[:, 1] >= threshold).view(np.int8)
            return np.asarray(labels, dtype=object)[chosen].tolist()
        if rows is not None:
            return [labels[p.index(max(p))] for p in rows]
        return np.asarray(labels, dtype=object)[self.array.argmax(axis=1)].tolist()

    def labels_and_rows(self, labels: tuple[str, ...], digits: int) -> tuple[list[str], list[list[float]]]:
        """Each row's predicted label (`labels`), and its probabilities rounded to `digits`."""
        rows = self.rows
        if rows is not None:
            return self.labels(labels), [[round(v, digits) for v in p] for p in rows]
        return self.labels(labels), np.round(self.array, digits).tolist()

    def positive(self) -> list[float] | np.ndarray:
        """A binary classifier's P(positive) per row (its last column), unrounded."""
        if self.rows is not None:
            return [p[1] for p in self.rows]
        return self.array[:, 1]


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


SCALES = ("log", "identity")  # a regression member's scale: its trees learn log(y / b(x)), or y - b(x)


@dataclass(frozen=True)
class Baseline:
    """A regressor member's model-free part, on the member's scale (`scale`).

    - "log": log b(x) = intercept[level of a group] + sum of beta_j * log(x_j). The trees learn log(y / b(x)),
      so a prediction is b(x) * exp(trees): it follows its inputs beyond the targets seen in training instead
      of stopping at the largest one, as trees alone would.
    - "identity": an offset on the target's own scale, intercept[level] + sum of beta_j * x_j, and a
      prediction is offset + trees (targets may be negative). The plain strategy has no inputs and no group:
      its pooled intercept, the mean target, is the offset of every row.
    """

    columns: tuple[int, ...]
    betas: tuple[float, ...]
    group_columns: tuple[int, ...]  # the one-hot columns of the group feature, in level order
    intercepts: tuple[float, ...]  # one per group level
    pooled_intercept: float  # for a missing or unseen group level
    scale: str = "log"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; one of {', '.join(SCALES)}")

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

    def linear_one(self, row: list[float]) -> float:
        level = _group_index(row, self.group_columns)
        total = self.intercepts[level] if level >= 0 else self.pooled_intercept
        for column, beta in zip(self.columns, self.betas):
            total += beta * row[column]
        return total

    def linear_batch(self, x: np.ndarray) -> np.ndarray:
        levels = _group_indices(x, self.group_columns)
        total = np.append(np.asarray(self.intercepts, dtype=np.float64), self.pooled_intercept)[levels]
        for column, beta in zip(self.columns, self.betas):
            total = total + beta * x[:, column].astype(np.float64)
        return total

    def one(self, row: list[float]) -> float:
        """The offset of one row on the member's scale: log b(x), or the identity scale's offset."""
        return self.log_one(row) if self.scale == "log" else self.linear_one(row)

    def batch(self, x: np.ndarray) -> np.ndarray:
        """The offsets of float32 rows on the member's scale (as `one`)."""
        return self.log_batch(x) if self.scale == "log" else self.linear_batch(x)

    @classmethod
    def from_dict(cls, data: dict, scale: str = "log") -> Baseline:
        return cls(tuple(data["columns"]), tuple(data["betas"]), tuple(data["group_columns"]),
                   tuple(data["intercepts"]), float(data["pooled_intercept"]), scale)


@dataclass(frozen=True)
class Interval:
    """A conformal half-width on the member's scale (of log y, or of y), per level of the baseline's
    group (or pooled); `widest`, the largest of them, for rows beyond the training ranges."""

    level: float
    group_columns: tuple[int, ...]
    q: tuple[float, ...]
    q_pooled: float

    def one(self, row: list[float]) -> float:
        level = _group_index(row, self.group_columns)
        return self.q[level] if level >= 0 else self.q_pooled

    def batch(self, x: np.ndarray) -> np.ndarray:
        return np.append(np.asarray(self.q, dtype=np.float64), self.q_pooled)[_group_indices(x, self.group_columns)]

    @cached_property
    def widest(self) -> float:
        return max((*self.q, self.q_pooled))

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

    @property
    def scale(self) -> str:
        """"log" (value b(x) * exp(margin), interval b(x) * exp(margin -/+ q)) or "identity" (value
        offset + margin, interval value -/+ q)."""
        return self.baseline.scale


@dataclass(slots=True)
class Estimates:
    """A regressor's answers: value, interval bounds, the regime that answered and whether the row is an
    extrapolation (a numeric input outside its training range), one per row.

    Values and bounds are Python lists from rows predicted one by one, float64 arrays from the batched
    evaluators (as for `Probabilities`, each kept in the form its evaluator made); so are the flags (Python
    bools, or a bool array). No flags (None): no row is known to extrapolate.
    """

    values: list[float] | np.ndarray
    lower: list[float] | np.ndarray
    upper: list[float] | np.ndarray
    regimes: list[str]
    extrapolation: list[bool] | np.ndarray | None = None

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

    def flags(self) -> list[bool]:
        """Whether each row is an extrapolation, as Python bools."""
        flags = self.extrapolation
        if flags is None:
            return [False] * len(self.values)
        return flags.tolist() if isinstance(flags, np.ndarray) else flags


class RegressionPredictor:
    """Each row goes to the first member whose needed inputs it has; the last member needs none.

    `ranges` are the numeric columns' training ranges, (column, train_min, train_max): a row with a value
    outside one (a missing value is not) is an extrapolation, and its interval is its member's widest
    half-width (`Interval.widest`), never narrower than the member's intervals of rows within the ranges.
    Rows hold float32 values, so the bounds are compared rounded to float32 too: a value equal to a bound in
    the request is within it.
    """

    def __init__(self, members: tuple[Member, ...], ranges: tuple[tuple[int, float, float], ...] = ()) -> None:
        if not members or members[-1].needs:
            raise ValueError("a regressor needs members, the last of which serves every row")
        self.members = members
        self.ranges = tuple((int(c), float(np.float32(low)), float(np.float32(high))) for c, low, high in ranges)
        self.outside = _compile_range_check(self.ranges)
        self._range_columns = np.array([c for c, _, _ in self.ranges], dtype=np.intp)
        self._low = np.array([low for _, low, _ in self.ranges], dtype=np.float32)
        self._high = np.array([high for _, _, high in self.ranges], dtype=np.float32)

    def member_of(self, row: list[float]) -> Member:
        for member in self.members:
            if all(row[c] == row[c] for c in member.needs):  # NaN != NaN: a missing input
                return member
        return self.members[-1]

    def outside_batch(self, x: np.ndarray) -> np.ndarray:
        """Whether each float32 row has a value outside its training range (NaN, missing, is not)."""
        if not self.ranges:
            return np.zeros(x.shape[0], dtype=bool)
        values = x[:, self._range_columns]
        return ((values < self._low) | (values > self._high)).any(axis=1)

    def predict(self, batch: FeatureBatch) -> Estimates:
        """Values and intervals of a validated batch; a few rows in plain Python, more through NumPy or XGBoost."""
        rows = batch.rows
        if rows is not None and all(m.predictor.fast is not None for m in self.members) \
                and len(rows) <= self.members[0].predictor.fast_max_rows:
            values, lower, upper, regimes, flags = [], [], [], [], []
            outside, exp = self.outside, math.exp
            for row in rows:
                member = self.member_of(row)
                margin = member.predictor.fast.predict_one(row)[0]
                extrapolated = outside(row)
                q = member.interval.widest if extrapolated else member.interval.one(row)
                baseline = member.baseline
                if baseline.scale == "log":
                    centre = baseline.log_one(row) + margin
                    values.append(exp(centre))
                    lower.append(exp(centre - q))
                    upper.append(exp(centre + q))
                else:
                    value = baseline.linear_one(row) + margin
                    values.append(value)
                    lower.append(value - q)
                    upper.append(value + q)
                regimes.append(member.name)
                flags.append(extrapolated)
            return Estimates(values, lower, upper, regimes, flags)
        x = batch.matrix
        n = x.shape[0]
        chosen = np.full(n, len(self.members) - 1)
        for i in reversed(range(len(self.members) - 1)):
            needs = list(self.members[i].needs)
            chosen[~np.isnan(x[:, needs]).any(axis=1)] = i
        outside = self.outside_batch(x)
        values, lower, upper = np.empty(n), np.empty(n), np.empty(n)
        for i, member in enumerate(self.members):
            rows_i = np.flatnonzero(chosen == i)
            if not rows_i.size:
                continue
            xi = x[rows_i]
            margin = member.predictor.outputs(xi)[:, 0]
            q = np.where(outside[rows_i], member.interval.widest, member.interval.batch(xi))
            if member.scale == "log":
                centre = member.baseline.log_batch(xi) + margin
                values[rows_i], lower[rows_i], upper[rows_i] = np.exp(centre), np.exp(centre - q), np.exp(centre + q)
            else:
                value = member.baseline.linear_batch(xi) + margin
                values[rows_i], lower[rows_i], upper[rows_i] = value, value - q, value + q
        names = np.asarray([m.name for m in self.members], dtype=object)
        return Estimates(values, lower, upper, names[chosen].tolist(), outside)


def _compile_range_check(ranges: tuple[tuple[int, float, float], ...]) -> Callable[[list[float]], bool]:
    """A generated function of a row: is any of the columns outside its range? One short-circuiting expression,
    as `_compile_single_row` does it; NaN fails both comparisons, so a missing value is within. Only ints and
    float reprs reach the source."""
    terms = [f"row[{c}] < {low!r} or row[{c}] > {high!r}" for c, low, high in ranges
             if not (math.isnan(low) or math.isnan(high))]
    source = f"def outside(row):\n    return {' or '.join(terms) if terms else 'False'}"
    namespace = {"inf": math.inf}
    exec(compile(source, "<training ranges>", "exec"), namespace)  # noqa: S102 - numbers only, see docstring
    return namespace["outside"]
