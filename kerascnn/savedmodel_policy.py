"""Untrusted SavedModels: check every op of the graph against what a classifier needs, before
any of its functions runs.

A SavedModel is a program: its signatures (and the resource initializers ``tf.saved_model.load``
runs) may read, write or list files. ``check_savedmodel`` parses ``saved_model.pb`` with the
protocol buffer classes only (nothing is loaded or run) and walks the nodes of every meta
graph and of every function in its library. Each op must be in ``ALLOWED_OPS``: the ops of
kerascnn's own exports of every zoo family (measured: 25 distinct ops in the serving functions
of convnet, lenet5 classic/modern+BN, mlp, resnet18/50, vgg11_bn, googlenet, alexnet, plain and
BatchNorm-folded) plus standard math, array, nn and control-flow ops. The checkpoint ops
(``SAVER_OPS``: SaveV2, RestoreV2, MergeV2Checkpoints ...) are allowed only in the functions
that the SavedModel's own ``saver_def`` reaches (``_traced_save`` / ``_traced_restore``); in a
serving function they are refused like any file-system op (WriteFile, ReadFile, MatchingFiles,
PrintV2, ImmutableConst, summaries, datasets, py_func ...), none of which is on the list.
"""
from __future__ import annotations

from pathlib import Path

from kerascnn.errors import ConfigError, DataError

MAX_GRAPH_BYTES = 1 << 30  # a saved_model.pb larger than 1 GiB is not a classifier's graph

# What kerascnn's own exports contain (see the module docstring), kept separately so the
# measured list is visible; the rest are standard ops that compute on tensors only.
MEASURED_OPS = frozenset("""
AddV2 AssignVariableOp AvgPool BiasAdd Cast ConcatV2 Const Conv2D Identity MatMul MaxPool Mean Mul
NoOp Pack Placeholder ReadVariableOp Relu Reshape Rsqrt Shape Sigmoid Softmax Squeeze
StatefulPartitionedCall StridedSlice Sub VarHandleOp VarIsInitializedOp
""".split())
STANDARD_OPS = frozenset("""
Abs Add AddN All Any ArgMax ArgMin Assert BatchMatMul BatchMatMulV2 BatchMatMulV3 BiasAddV1
BroadcastArgs BroadcastTo Ceil CheckNumerics ClipByValue Concat ConcatOffset Conv2DBackpropInput
Conv3D Cos Cumsum DepthwiseConv2dNative DepthToSpace Div DivNoNan Einsum Elu Equal Erf Exp ExpandDims
Expm1 Fill Floor FloorDiv FloorMod FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 Gather GatherNd
GatherV2 Gelu Greater GreaterEqual IdentityN If IsFinite IsInf IsNan L2Loss LeakyRelu Less LessEqual
Log Log1p LogicalAnd LogicalNot LogicalOr LogSoftmax LRN Max Maximum MaxPool3D MaxPoolV2 Min Minimum
MirrorPad Neg NotEqual OneHot OnesLike Pad PadV2 PartitionedCall Pow Prod Range Rank RealDiv
Reciprocal Relu6 ResizeBilinear ResizeNearestNeighbor Round Select SelectV2 Selu Sign Sin Size
Slice Softplus Softsign SpaceToDepth Split SplitV Sqrt Square SquaredDifference StatelessIf
StatelessWhile StopGradient Sum Tan Tanh Tile TopKV2 Transpose Unpack While ZerosLike
""".split())
ALLOWED_OPS = MEASURED_OPS | STANDARD_OPS
# Checkpoint ops: fine in the saver's own functions (tf.saved_model.load restores variables
# from variables/ itself), refused anywhere else.
SAVER_OPS = frozenset("""
SaveV2 RestoreV2 MergeV2Checkpoints ShardedFilename StringJoin StaticRegexFullMatch
DisableCopyOnRead
""".split())


def _node_name(tensor_name: str) -> str:
    return tensor_name.lstrip("^").split(":")[0]


def _called_functions(node, library: set) -> set:
    """Names of library functions a node calls: its op itself, or any func-valued attribute."""
    out = {node.op} & library
    for attr in node.attr.values():
        if attr.HasField("func"):
            out.add(attr.func.name)
        if attr.HasField("list"):
            out.update(f.name for f in attr.list.func)
    return out & library


def _saver_functions(meta_graph, functions: dict) -> set:
    """Functions reached only through the meta graph's saver_def (save / restore)."""
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    saver = meta_graph.saver_def
    todo = [_node_name(t) for t in (saver.save_tensor_name, saver.restore_op_name) if t]
    seen_nodes, funcs = set(), set()
    while todo:  # main-graph nodes feeding the saver tensors
        name = todo.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        funcs |= _called_functions(nodes[name], set(functions))
        todo += [_node_name(i) for i in nodes[name].input]
    return _closure(funcs, functions)


def _closure(start: set, functions: dict) -> set:
    out, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name in out or name not in functions:
            continue
        out.add(name)
        for node in functions[name].node_def:
            todo += list(_called_functions(node, set(functions)))
    return out


def disallowed_ops(saved_model) -> list:
    """[(op, where)] for every op outside the policy in a parsed ``SavedModel`` proto."""
    bad = []
    for mg in saved_model.meta_graphs:
        functions = {f.signature.name: f for f in mg.graph_def.library.function}
        # functions that something other than the saver reaches are checked strictly
        saver_nodes = {_node_name(t) for t in (mg.saver_def.save_tensor_name, mg.saver_def.restore_op_name) if t}
        other_roots = set()
        for node in mg.graph_def.node:
            if node.name not in saver_nodes:
                other_roots |= _called_functions(node, set(functions))
        strict = _closure(other_roots, functions)
        saver_only = _saver_functions(mg, functions) - strict
        for node in mg.graph_def.node:
            if node.op not in ALLOWED_OPS and node.op not in functions:
                bad.append((node.op, f"graph node {node.name}"))
        for name, f in functions.items():
            allowed = ALLOWED_OPS | SAVER_OPS if name in saver_only else ALLOWED_OPS
            for node in f.node_def:
                if node.op not in allowed and node.op not in functions:
                    bad.append((node.op, f"function {name}"))
    return bad


def check_savedmodel(path) -> None:
    """Refuse (ConfigError, one line naming the op) a SavedModel whose graph holds an op outside
    the classifier allowlist. Reads only ``saved_model.pb``; runs nothing."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(path) / "saved_model.pb"
    try:
        size = pb.stat().st_size
        if size > MAX_GRAPH_BYTES:
            raise DataError(f"{pb}: {size:,} bytes is too large for a classifier's graph")
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString(pb.read_bytes())
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{pb}: not a readable SavedModel graph ({e.__class__.__name__})") from None
    bad = disallowed_ops(proto)
    if bad:
        ops = sorted({op for op, _ in bad}, key=lambda o: (not _touches_outside(o), o))  # the worst first
        op, where = next(b for b in bad if b[0] == ops[0])
        more = f" (and {len(ops) - 1} more: {', '.join(o[:40] for o in ops[1:4])})" if len(ops) > 1 else ""
        what = "file or system access" if _touches_outside(op) else "not on the classifier op allowlist"
        raise ConfigError(f"{path}: the SavedModel runs op {op[:60]!r} in {where[:80]}{more} ({what}); refused "
                          f"before loading; pass --unsafe only if you trust this model")


def _touches_outside(op: str) -> bool:
    """Ops known to reach outside the tensors: files, printing, summaries, datasets, Python."""
    return op in SAVER_OPS or any(w in op for w in ("File", "Print", "Summary", "Dataset", "PyFunc", "Reader",
                                                    "Immutable", "Save", "Restore", "Load", "Writer"))
