"""`einsum(equation, a, b, ...)`: torch.einsum, with its equation checked at compile time.

The equation is validated before anything else reads it: letters, commas, `->`, spaces and
`...` only (nothing else can reach the generated code, which writes it back as a Python
string literal), one subscript term per tensor, one letter per dimension (the `...` covering
the rest, aligned from the right), a letter the same size wherever it occurs.  The batch
rule holds: every batched operand starts with the same index and the result starts with it.
An index repeated inside one term (a diagonal, `ii->i`) is refused.

The compiled-CAM derivative of an einsum w.r.t. an operand is an einsum of the output
gradient and the other operands: `y = einsum("bij,bjk->bik", a, c)` gives
`da = einsum("zbik,bjk->zbij", g, c)` with `z` the K selected classes; an index of the
operand that nothing else carries (summed inside it) is broadcast back.

Cost: two operands are a batched matrix product (indices of both operands and the result:
batch; of one operand and the result: M or N; of both operands only: K), one operand a
reduction, more operands the pairwise products torch computes, left to right.  MACs are the
product of all index sizes (per product), the traffic the operands and the result.
"""

from __future__ import annotations

import math
import re

from evo import codes as C
from evo.ir.node import Op
from evo.ops.base import Call, Imports, NotConvertible, OpDef, OpError, ParamSpec, fmt_shape, lit, numel, register

EINSUM_T = Op("einsum_grad")  # the gradient of einsum w.r.t. one operand: an einsum with the others

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TERM = re.compile(r"[A-Za-z]*(\.\.\.)?[A-Za-z]*")
_ALLOWED = re.compile(r"[A-Za-z,. ]*(->[A-Za-z. ]*)?")


class EquationError(ValueError):
    pass


def parse(equation: str) -> tuple[list[str], str | None]:
    """(input terms, output term or None when implicit), spaces removed; EquationError for anything
    but letters, commas, one `->`, spaces and `...` (at most one per term)."""
    if not isinstance(equation, str) or not _ALLOWED.fullmatch(equation):
        raise EquationError("an einsum equation holds letters, commas, '->', spaces and '...' only")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    for t in terms + ([rhs] if arrow else []):
        if not _TERM.fullmatch(t):
            raise EquationError(f"the subscripts '{t}' are not letters with at most one '...'")
    return terms, (rhs if arrow else None)


def _labels(term: str, rank_: int | None) -> list:
    """The term's labels, `...` expanded to ('.', k) labels (k counted from the right); rank_ None: the
    output term, whose `...` stands for `rank_`... filled in by the caller."""
    head, ell, tail = term.partition("...")
    if not ell:
        return list(term)
    n = rank_ - len(head) - len(tail)
    return list(head) + [(".", n - 1 - k) for k in range(n)] + list(tail)


def analyse(equation: str, shapes: list[tuple]) -> tuple[list[list], list, dict]:
    """(labels of each operand, labels of the output, size of each label) for operands of `shapes`;
    OpError at the offending argument ("equation" or "#i")."""
    try:
        terms, out = parse(equation)
    except EquationError as e:
        raise OpError(str(e), "equation", C.VALUE_OUT_OF_RANGE,
                      'e.g. einsum("bij,bjk->bik", a, b) or einsum("...ij,...jk->...ik", a, b)') from None
    if not shapes:
        raise OpError("einsum needs at least one tensor after its equation", "equation", C.MISSING_ARGUMENT)
    if len(terms) != len(shapes):
        raise OpError(f"the equation has {len(terms)} subscript term{'s' if len(terms) != 1 else ''} for "
                      f"{len(shapes)} tensor{'s' if len(shapes) != 1 else ''}", "equation",
                      C.WRONG_NUMBER_OF_ARGUMENTS, "one comma-separated term per tensor")
    labels: list[list] = []
    sizes: dict = {}
    where: dict = {}
    ell_rank = 0
    for i, (t, s) in enumerate(zip(terms, shapes)):
        named = len(t.replace("...", ""))
        if "..." not in t and named != len(s) or named > len(s):
            raise OpError(f"operand {i + 1} is {len(s)}-D, {fmt_shape(s)}, but its subscripts '{t}' name "
                          f"{'at least ' if '...' in t else ''}{named} dimension{'s' if named != 1 else ''}",
                          f"#{i}", C.WRONG_TENSOR_RANK)
        seen = set()
        for ch in t.replace("...", ""):
            if ch in seen:
                raise OpError(f"index '{ch}' appears twice in the subscripts '{t}' (a diagonal); evo's einsum "
                              "takes each index once per operand", "equation", C.VALUE_OUT_OF_RANGE)
            seen.add(ch)
        ls = _labels(t, len(s))
        if "..." in t:
            ell_rank = max(ell_rank, len(s) - named)
        for lab, d in zip(ls, s):
            if lab in sizes and sizes[lab] != d:
                name = f"index '{lab}'" if isinstance(lab, str) else "a dimension under '...'"
                raise OpError(f"{name} is {sizes[lab]} in operand {where[lab] + 1} but {d} in operand {i + 1}, "
                              f"{fmt_shape(s)}", f"#{i}", C.SHAPE_MISMATCH,
                              "an index has one size in every operand (einsum does not broadcast here)")
            if lab not in sizes:
                sizes[lab], where[lab] = d, i
        labels.append(ls)
    ell = [(".", ell_rank - 1 - k) for k in range(ell_rank)]
    if out is None:  # implicit: `...` first, then the letters used once, in alphabetical order
        letters = [ch for t in terms for ch in t.replace("...", "")]
        olabels = ell + sorted(ch for ch in set(letters) if letters.count(ch) == 1)
    else:
        seen = set()
        for ch in out.replace("...", ""):
            if ch in seen:
                raise OpError(f"index '{ch}' appears twice in the result's subscripts '{out}'", "equation",
                              C.VALUE_OUT_OF_RANGE)
            if ch not in sizes:
                raise OpError(f"the result's index '{ch}' is in no operand's subscripts", "equation",
                              C.VALUE_OUT_OF_RANGE)
            seen.add(ch)
        head, has_ell, tail = out.partition("...")
        olabels = list(head) + (ell if has_ell else []) + list(tail)
    # evo's batch rule: the batched operands share their first index, and the result starts with it
    batched = [(i, ls[0]) for i, (ls, s) in enumerate(zip(labels, shapes)) if s and not isinstance(s[0], int)]
    if batched:
        i0, b = batched[0]
        for i, lab in batched[1:]:
            if lab != b:
                raise OpError(f"operands {i0 + 1} and {i + 1} are batched but their first indices differ",
                              f"#{i}", C.SHAPE_MISMATCH, "start every batched operand's subscripts with the batch index")
        if not olabels or olabels[0] != b:
            raise OpError("the result must keep the batch dimension first: start its subscripts with the batch "
                          "index", "equation", C.VALUE_OUT_OF_RANGE, 'e.g. "bij,bjk->bik"')
    return labels, olabels, sizes


def _shape(shapes, a):
    labels, out, sizes = analyse(a["equation"], shapes)
    return tuple(sizes[lab] for lab in out)


def letters_for(labels: list[list], out: list, extra: int = 0) -> tuple[dict, list[str]]:
    """A letter for every label (a letter its own), and `extra` unused letters."""
    used = {lab for ls in labels for lab in ls if isinstance(lab, str)}
    free = [ch for ch in _LETTERS if ch not in used]
    m: dict = {}
    for ls in labels + [out]:
        for lab in ls:
            if lab not in m:
                m[lab] = lab if isinstance(lab, str) else free.pop(0)
    return m, free[:extra]


def canonical(equation: str, shapes: list[tuple]) -> str:
    """The explicit equation of `equation` on `shapes` (no spaces, `...` as written)."""
    terms, out = parse(equation)
    if out is None:
        labels, olabels, _ = analyse(equation, shapes)
        has_ell = any("..." in t for t in terms)
        out = ("..." if has_ell else "") + "".join(lab for lab in olabels if isinstance(lab, str))
    return ",".join(terms) + "->" + out


def _code(a, xs):
    return f"torch.einsum({lit(a['equation'])}, {', '.join(xs)})"


# ------------------------------------------------------------------------------ gradient

def _grad(b, n, g):
    shapes = [b.nodes[i].shape for i in n.inputs]
    labels, out, sizes = analyse(n.attr("equation"), shapes)
    m, (z,) = letters_for(labels, out, 1)
    res = []
    for i, ls in enumerate(labels):
        if not shapes[i] or isinstance(shapes[i][0], int):
            continue  # an unbatched operand (a learnable tensor) depends on no CAM layer
        others = [j for j in range(len(labels)) if j != i]
        reach = set(out) | {lab for j in others for lab in labels[j]}
        kept = [lab for lab in ls if lab in reach]
        eq = ",".join([z + "".join(m[lab] for lab in out)] + ["".join(m[lab] for lab in labels[j]) for j in others])
        eq += "->" + z + "".join(m[lab] for lab in kept)
        attrs = {"equation": eq, "shape": tuple(shapes[i][1:]),
                 "expand": tuple(-1 if lab in reach else sizes[lab] for lab in ls[1:]),
                 "cost": ",".join(["".join(m[lab] for lab in out)] + ["".join(m[lab] for lab in labels[j])
                                                                     for j in others])
                 + "->" + "".join(m[lab] for lab in kept)}
        node = b.add(EINSUM_T, (g,) + tuple(n.inputs[j] for j in others), attrs, b.gshape(b.nodes[n.inputs[i]]),
                     n.span, None, f"d_{n.name or 'einsum'}")
        res.append((i, node))
    return res


def _grad_code(a, ins, k, const, path):
    """da = einsum(g, others) over [K, B, ...]; an index only `a` carried broadcast back; [K*B, ...]."""
    g, others = ins[0], ins[1:]
    expr = f"torch.einsum({', '.join([lit(a['equation']), f'_evo_k({g}, {k})'] + list(others))})"
    lines = [f"{{out}} = {expr}"]
    exp = a["expand"]
    if any(e != -1 for e in exp):
        for p, e in enumerate(exp):
            if e != -1:
                lines.append(f"{{out}} = {{out}}.unsqueeze({p + 2})")
        lines.append(f"{{out}} = {{out}}.expand(-1, -1, {', '.join(str(e) for e in exp)})")
    lines.append(f"{{out}} = {{out}}.reshape(-1, {', '.join(str(d) for d in a['shape'])})" if a["shape"]
                 else "{out} = {out}.reshape(-1)")
    return lines


# ------------------------------------------------------------------------------ cost

def _pair_cost(W, la: list, lb: list, lo: list, sizes: dict):
    sa, sb, so = set(la), set(lb), set(lo)

    def prod(labs):
        return math.prod(sizes[x] for x in labs)
    batch = [x for x in la if x in sb and x in so]
    m = [x for x in la if x in so and x not in sb]
    n = [x for x in lb if x in so and x not in sa]
    k = [x for x in la if x not in so]  # contracted (or summed inside a): costed as the shared dimension
    k += [x for x in lb if x not in so and x not in sa]
    return W.MatmulWorkload(prod(m), prod(n), prod(k), batch=prod(batch))


def contraction_cost(W, labels: list[list], out: list, sizes: dict):
    """One operand: a reduction; two: a batched matrix product; more: the pairwise products, left to right
    (each keeping the indices a later operand or the result needs)."""
    if len(labels) == 1:
        (ls,) = labels
        length = math.prod(sizes[x] for x in ls if x not in out)
        if length == 1:
            return W.CopyWorkload(numel([sizes[x] for x in ls]), numel([sizes[x] for x in out]))
        return W.ReduceWorkload(numel([sizes[x] for x in out]), length)
    if len(labels) == 2:
        return _pair_cost(W, labels[0], labels[1], out, sizes)
    steps = []
    cur = labels[0]
    for j in range(1, len(labels)):
        later = set(out) | {x for ls in labels[j + 1:] for x in ls}
        nxt = [x for x in dict.fromkeys(cur + labels[j]) if x in later] if j < len(labels) - 1 else out
        steps.append((f"product {j}", _pair_cost(W, cur, labels[j], nxt, sizes)))
        cur = nxt
    return steps


def _cost(W, a, ins, out):
    labels, olabels, sizes = analyse(a["equation"], [tuple(s) for s in ins])
    return contraction_cost(W, labels, olabels, sizes)


def _grad_cost(W, a, ins, out):
    lhs, _, rhs = a["cost"].partition("->")
    terms = lhs.split(",")
    sizes: dict = {}
    for t, s in zip(terms, ins):
        for ch, d in zip(t, s):
            sizes[ch] = max(sizes.get(ch, 1), int(d))  # the gradient's rows: K*B (the others' B)
    return contraction_cost(W, [list(t) for t in terms], list(rhs), sizes)


register(OpDef(EINSUM_T, (), None, n_inputs=None, gradient_only=True, grad_code=_grad_code, cost=_grad_cost,
               doc="gradient of einsum w.r.t. one operand: an einsum of the gradient and the other operands"))


# ------------------------------------------------------------------------------ importer

def _einsum_call(b, shapes):
    eq = b["equation"]
    try:
        parse(eq)
    except EquationError as e:
        raise NotConvertible(str(e)) from None
    if not isinstance(b["operands"], tuple) or not b["operands"]:
        raise NotConvertible("an einsum of no tensors")
    try:
        return {"equation": canonical(eq, [tuple(s) for s in shapes])}
    except OpError as e:
        raise NotConvertible(e.message) from None


register(OpDef(
    "einsum", (ParamSpec("equation", "str", doc="the subscripts, as torch.einsum"),), _shape, n_inputs=None,
    leading=1, functional=_code, torch="torch.einsum", doc="Einstein summation (torch.einsum)",
    grad=_grad, cost=_cost,
    imports=Imports(calls=(Call(("torch.einsum", "aten.einsum"), ("equation", "operands", "path"), _einsum_call,
                                {"path": None}, tensors=("operands",), varargs="operands",
                                constant="an einsum of something other than tensors"),)),
    doc_call='einsum(equation, a, b, ...)',
    doc_args='`equation` string: letters, commas, `->`, spaces and `...` only (E0203); then the tensors',
    doc_shape="as torch.einsum: one term per tensor (E0104), one index per dimension with `...` for the rest "
              "(E0300), an index one size everywhere (E0301), each index once per term and in the result; "
              "batched operands start with the batch index and so does the result (E0203). Costed as a "
              "batched matrix product (two operands), a reduction (one) or pairwise products: MACs the "
              "product of all index sizes, traffic the operands and the result"))
