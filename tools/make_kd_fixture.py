#!/usr/bin/python3
"""Writes tests/fixtures/kd_fixture.h: fixed inputs and PyTorch's values of the distillation losses
(and a few student-input gradients), for tests/test_kd.c.

Run with Debian's torch:  /usr/bin/python3 tools/make_kd_fixture.py
The formulas follow RepDistiller (KD, FitNet, AT, NST, FSP, VID, SP, RKD, PKT, CC, CRD), mdistiller
(DKD) and ReviewKD (HCL), written here from their published semantics. Inputs are float32; the
references are computed in float64 from those float32 values. PyTorch is only a fixture tool.
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
rs = np.random.RandomState(20240611)
OUT = {}  # name -> (ctype, flat values)


def inp(name, shape, scale=1.0, offset=0.0):
    a = (rs.randn(*shape) * scale + offset).astype(np.float32)
    OUT[name] = ("float", a.ravel())
    return torch.tensor(a.astype(np.float64), requires_grad=True)


def put(name, t):
    a = t.detach().double().numpy() if torch.is_tensor(t) else np.asarray(t, dtype=np.float64)
    OUT[name] = ("double", np.atleast_1d(a).ravel().copy())


def put_int(name, a, ctype="int32_t"):
    OUT[name] = (ctype, np.asarray(a).ravel())


def grad_of(loss, x):
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    return g


def pool_common(a, b):
    h, w = min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3])
    if a.shape[2:] != (h, w):
        a = F.adaptive_avg_pool2d(a, (h, w))
    if b.shape[2:] != (h, w):
        b = F.adaptive_avg_pool2d(b, (h, w))
    return a, b


# ---- logits ----
B, K, T = 4, 10, 4.0
s_log = inp("s_logits", (B, K), 2.0)
t_log = inp("t_logits", (B, K), 2.0)
labels = rs.randint(0, K, size=B).astype(np.int32)
put_int("labels", labels)
lab = torch.tensor(labels.astype(np.int64))

kd_per = F.kl_div(F.log_softmax(s_log / T, 1), F.softmax(t_log / T, 1), reduction="none").sum(1) * T * T
kd = F.kl_div(F.log_softmax(s_log / T, 1), F.softmax(t_log / T, 1), reduction="sum") * T * T / B
put("kd_mean", kd)
put("kd_none", kd_per)
put("kd_grad_s", grad_of(kd, s_log))
put("kd_grad_t", grad_of(kd, t_log))

put("l2_mean", F.mse_loss(s_log, t_log))
put("l2_none", ((s_log - t_log) ** 2).mean(1))


def dkd_per(ls, lt, target, alpha, beta, temp):
    gt = torch.zeros_like(ls).scatter_(1, target.unsqueeze(1), 1)
    other = 1 - gt
    ps, pt = F.softmax(ls / temp, 1), F.softmax(lt / temp, 1)
    bs = torch.cat([(ps * gt).sum(1, keepdim=True), (ps * other).sum(1, keepdim=True)], 1)
    bt = torch.cat([(pt * gt).sum(1, keepdim=True), (pt * other).sum(1, keepdim=True)], 1)
    tckd = F.kl_div(torch.log(bs), bt, reduction="none").sum(1) * temp**2
    qt = F.softmax(lt / temp - 1000.0 * gt, 1)
    qs = F.log_softmax(ls / temp - 1000.0 * gt, 1)
    nckd = F.kl_div(qs, qt, reduction="none").sum(1) * temp**2
    return alpha * tckd + beta * nckd


dkd_n = dkd_per(s_log, t_log, lab, 1.0, 8.0, T)
dkd = dkd_n.mean()
put("dkd_mean", dkd)
put("dkd_none", dkd_n)
put("dkd_grad_s", grad_of(dkd, s_log))

# ---- feature maps ----
fs = inp("fs", (2, 4, 6, 6))
ft = inp("ft", (2, 6, 3, 3))       # smaller, more channels: AT, NST, VID pool fs
ft_same = inp("ft_same", (2, 4, 6, 6))  # FitNet, HCL
ft_small = inp("ft_small", (2, 4, 3, 3))  # feature MSE with pooling


def at_map(f):
    return F.normalize(f.pow(2).mean(1).view(f.size(0), -1))


a_s, a_t = pool_common(fs, ft)
at_n = (at_map(a_s) - at_map(a_t)).pow(2).mean(1)
at = (at_map(a_s) - at_map(a_t)).pow(2).mean()
put("at_mean", at)
put("at_none", at_n)
put("at_grad_s", grad_of(at, fs))
put("at_grad_t", grad_of(at, ft))


def nst_rows(f):
    return F.normalize(f.view(f.shape[0], f.shape[1], -1), dim=2)


def poly(a, b):  # (B, Cb, Ca)
    return (a.unsqueeze(1) * b.unsqueeze(2)).sum(-1).pow(2)


n_s, n_t = pool_common(fs, ft)
n_s, n_t = nst_rows(n_s), nst_rows(n_t)
nst_n = poly(n_t, n_t).mean((1, 2)) + poly(n_s, n_s).mean((1, 2)) - 2 * poly(n_s, n_t).mean((1, 2))
nst = poly(n_t, n_t).mean() + poly(n_s, n_s).mean() - 2 * poly(n_s, n_t).mean()
put("nst_mean", nst)
put("nst_none", nst_n)
put("nst_grad_s", grad_of(nst, fs))

put("fitnet_mean", F.mse_loss(fs, ft_same))
put("fitnet_none", ((fs - ft_same) ** 2).mean((1, 2, 3)))
p_s, p_t = pool_common(fs, ft_small)
put("fmse_mean", F.mse_loss(p_s, p_t))
put("fmse_none", ((p_s - p_t) ** 2).mean((1, 2, 3)))


def hcl_per(a, b):  # ReviewKD's hcl for one pair, per sample
    per = ((a - b) ** 2).mean((1, 2, 3))
    cnt, tot = 1.0, 1.0
    for lv in [4, 2, 1]:
        if lv >= a.shape[2]:
            continue
        pa, pb = F.adaptive_avg_pool2d(a, (lv, lv)), F.adaptive_avg_pool2d(b, (lv, lv))
        cnt /= 2.0
        per = per + ((pa - pb) ** 2).mean((1, 2, 3)) * cnt
        tot += cnt
    return per / tot


hcl_n = hcl_per(fs, ft_same)
put("hcl_mean", hcl_n.mean())
put("hcl_none", hcl_n)
put("hcl_grad_s", grad_of(hcl_n.mean(), fs))

# FSP: one pair of layers for each side
s_hi = inp("s_hi", (2, 5, 3, 3))
t_lo = inp("t_lo", (2, 4, 4, 4))
t_hi = inp("t_hi", (2, 5, 4, 4))


def fsp_matrix(bot, top):
    bot, top = pool_common(bot, top)
    bot = bot.unsqueeze(1).reshape(bot.shape[0], 1, bot.shape[1], -1)
    top = top.unsqueeze(2).reshape(top.shape[0], top.shape[1], 1, -1)
    return (bot * top).mean(-1)


g_s, g_t = fsp_matrix(fs, s_hi), fsp_matrix(t_lo, t_hi)
put("fsp_mean", (g_s - g_t).pow(2).mean())
put("fsp_none", (g_s - g_t).pow(2).mean((1, 2)))
put("fsp_grad_s", grad_of((g_s - g_t).pow(2).mean(), fs))

# VID with given (not initialised) parameters: in 4, mid 6, out 6
w0 = inp("vid_w0", (6, 4, 1, 1), 0.5)
w2 = inp("vid_w2", (6, 6, 1, 1), 0.4)
w4 = inp("vid_w4", (6, 6, 1, 1), 0.4)
log_scale = inp("vid_log_scale", (6,), 0.5, 1.0)
v_s, v_t = pool_common(fs, ft)
mu = F.conv2d(F.relu(F.conv2d(F.relu(F.conv2d(v_s, w0)), w2)), w4)
var = (torch.log(1.0 + torch.exp(log_scale)) + 1e-5).view(1, -1, 1, 1)
nlp = 0.5 * ((mu - v_t) ** 2 / var + torch.log(var))
put("vid_mean", nlp.mean())
put("vid_none", nlp.mean((1, 2, 3)))
put("vid_grad_s", grad_of(nlp.mean(), fs))
put("vid_grad_w0", grad_of(nlp.mean(), w0))
put("vid_grad_log_scale", grad_of(nlp.mean(), log_scale))

# ---- relations ----
es = inp("es", (5, 7))
et = inp("et", (5, 9))


def sp_loss(a, b):
    bsz = a.shape[0]
    ga = F.normalize(a.view(bsz, -1) @ a.view(bsz, -1).t())
    gb = F.normalize(b.view(bsz, -1) @ b.view(bsz, -1).t())
    return ((gb - ga) ** 2).sum() / (bsz * bsz)


sp = sp_loss(es, et)
put("sp", sp)
put("sp_grad_s", grad_of(sp, es))
put("sp_grad_t", grad_of(sp, et))


def pdist(e, eps=1e-12):
    sq = e.pow(2).sum(1)
    res = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt().clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def rkd_loss(s, t, wd=25.0, wa=50.0):
    with torch.no_grad():
        td = pdist(t)
        td = td / td[td > 0].mean()
    d = pdist(s)
    d = d / d[d > 0].mean()
    loss_d = F.smooth_l1_loss(d, td)
    with torch.no_grad():
        tv = F.normalize(t.unsqueeze(0) - t.unsqueeze(1), p=2, dim=2)
        ta = torch.bmm(tv, tv.transpose(1, 2)).view(-1)
    sv = F.normalize(s.unsqueeze(0) - s.unsqueeze(1), p=2, dim=2)
    sa = torch.bmm(sv, sv.transpose(1, 2)).view(-1)
    loss_a = F.smooth_l1_loss(sa, ta)
    return wd * loss_d + wa * loss_a


rkd = rkd_loss(es, et)
put("rkd", rkd)
put("rkd_grad_s", grad_of(rkd, es))


def pkt_loss(out, tgt, eps=1e-7):
    on = out / (torch.sqrt(torch.sum(out**2, dim=1, keepdim=True)) + eps)
    tn = tgt / (torch.sqrt(torch.sum(tgt**2, dim=1, keepdim=True)) + eps)
    ms = (on @ on.t() + 1.0) / 2.0
    ts = (tn @ tn.t() + 1.0) / 2.0
    ms = ms / ms.sum(1, keepdim=True)
    ts = ts / ts.sum(1, keepdim=True)
    return torch.mean(ts * torch.log((ts + eps) / (ms + eps)))


pkt = pkt_loss(es, et)
put("pkt", pkt)
put("pkt_grad_s", grad_of(pkt, es))


def cc_corr(f, gamma=0.4, order=2):
    f = F.normalize(f, p=2, dim=-1)
    sim = f @ f.t()
    c = torch.zeros_like(sim)
    for p in range(order + 1):
        c = c + math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * torch.pow(sim, p)
    return c


cc = F.mse_loss(cc_corr(es), cc_corr(et))
put("cc", cc)
put("cc_grad_s", grad_of(cc, es))

# ---- CRD: RepDistiller's Embed + ContrastMemory + ContrastLoss, two steps with given negatives ----
N_DATA, FEAT, NCE_K, NCE_T, NCE_M = 12, 4, 5, 0.07, 0.5
cs = inp("crd_fs", (3, 7))
ct = inp("crd_ft", (3, 9))
Ws = inp("crd_ws", (FEAT, 7), 0.4)
bs_ = inp("crd_bs", (FEAT,), 0.1)
Wt = inp("crd_wt", (FEAT, 9), 0.4)
bt_ = inp("crd_bt", (FEAT,), 0.1)
stdv = 1.0 / math.sqrt(FEAT / 3)
mem1 = (rs.rand(N_DATA, FEAT) * 2 * stdv - stdv).astype(np.float32)
mem2 = (rs.rand(N_DATA, FEAT) * 2 * stdv - stdv).astype(np.float32)
OUT["crd_mem_s"] = ("float", mem1.ravel())
OUT["crd_mem_t"] = ("float", mem2.ravel())
mem1 = torch.tensor(mem1.astype(np.float64))
mem2 = torch.tensor(mem2.astype(np.float64))


def embed(x, w, b):
    y = F.linear(x.view(x.shape[0], -1), w, b)
    return y / y.pow(2).sum(1, keepdim=True).pow(0.5)


def contrast_loss(x, n_data):
    bsz, m = x.shape[0], x.size(1) - 1
    pn = 1 / float(n_data)
    p_pos = x.select(1, 0)
    log_d1 = torch.div(p_pos, p_pos.add(m * pn + 1e-7)).log()
    p_neg = x.narrow(1, 1, m)
    log_d0 = torch.div(p_neg.clone().fill_(m * pn), p_neg.add(m * pn + 1e-7)).log()
    return -(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / bsz


Z = [-1.0, -1.0]


def crd_step(f_s, f_t, y, cidx):
    v1, v2 = embed(f_s, Ws, bs_), embed(f_t, Wt, bt_)
    bsz = v1.shape[0]
    w1 = mem1[cidx.view(-1)].view(bsz, NCE_K + 1, FEAT)
    out_v2 = torch.exp(torch.bmm(w1, v2.view(bsz, FEAT, 1)) / NCE_T)
    w2 = mem2[cidx.view(-1)].view(bsz, NCE_K + 1, FEAT)
    out_v1 = torch.exp(torch.bmm(w2, v1.view(bsz, FEAT, 1)) / NCE_T)
    if Z[0] < 0:  # stored as float32 in the reference's params buffer
        Z[0] = float(np.float32((out_v1.mean() * N_DATA).item()))
    if Z[1] < 0:
        Z[1] = float(np.float32((out_v2.mean() * N_DATA).item()))
    out_v1, out_v2 = out_v1 / Z[0], out_v2 / Z[1]
    with torch.no_grad():
        for mem, v in ((mem1, v1), (mem2, v2)):
            pos = mem[y] * NCE_M + v * (1 - NCE_M)
            mem[y] = pos / pos.pow(2).sum(1, keepdim=True).pow(0.5)
    return (contrast_loss(out_v1.squeeze(-1), N_DATA) + contrast_loss(out_v2.squeeze(-1), N_DATA)).squeeze()


idx1 = np.array([3, 7, 0], dtype=np.int64)
cidx1 = np.concatenate([idx1[:, None], rs.randint(0, N_DATA, size=(3, NCE_K))], 1).astype(np.int64)
put_int("crd_idx1", idx1, "int64_t")
put_int("crd_cidx1", cidx1, "int64_t")
l1 = crd_step(cs, ct, torch.tensor(idx1), torch.tensor(cidx1))
put("crd_loss1", l1)
put("crd_z", np.array(Z))
put("crd_grad_fs", grad_of(l1, cs))
put("crd_grad_ws", grad_of(l1, Ws))
put("crd_grad_wt", grad_of(l1, Wt))
put("crd_mem_s_after1", mem1)
put("crd_mem_t_after1", mem2)
# second step: other samples (one repeated), same inputs: Z stays, memory moved
idx2 = np.array([7, 11, 5], dtype=np.int64)
cidx2 = np.concatenate([idx2[:, None], rs.randint(0, N_DATA, size=(3, NCE_K))], 1).astype(np.int64)
cidx2[0, 1] = 3  # a row updated by step 1
put_int("crd_idx2", idx2, "int64_t")
put_int("crd_cidx2", cidx2, "int64_t")
put("crd_loss2", crd_step(cs, ct, torch.tensor(idx2), torch.tensor(cidx2)))

# ---- write ----
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "kd_fixture.h")
with open(path, "w") as f:
    f.write("/* Generated by tools/make_kd_fixture.py (PyTorch %s): inputs (float) and reference values\n"
            " * (double, computed in float64) of the distillation losses. Do not edit. */\n" % torch.__version__)
    f.write("#ifndef KD_FIXTURE_H\n#define KD_FIXTURE_H\n#include <stdint.h>\n\n")
    for name, (ctype, vals) in OUT.items():
        if ctype == "float":
            body = ", ".join("%.9g" % v for v in vals)
        elif ctype == "double":
            body = ", ".join("%.17g" % v for v in vals)
        else:
            body = ", ".join("%d" % v for v in vals)
        f.write("static const %s kdfx_%s[%d] = {%s};\n" % (ctype, name, len(vals), body))
    f.write("\n#endif\n")
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")
