/* Distillation losses: the "paths" a student can learn from a teacher, on logits, feature maps and
 * the relations between samples. Each loss is a function of the student's and the teacher's
 * tensors, built from the differentiable ops (so the tape gives its backward), and returns a loss
 * tensor; NULL on error with the context's message naming the loss and the shapes.
 *
 * Gradients flow to every input that requires one: normally only the student's (teachers run with
 * grad mode off or come through rt_detach), but a teacher that requires grad (online or mutual
 * distillation) gets the true gradient of the same loss. Where the reference code detaches a
 * teacher-only term (NST's K(t,t), RKD's teacher side) the loss value is the same and a detached
 * teacher reproduces the reference exactly.
 *
 * Reductions: losses with a per-sample form take an rt_reduction. RT_NONE gives one value per
 * sample, shape (B,); RT_MEAN the mean of those over the batch (the reference's scalar); RT_SUM
 * their sum. (For the MSE-based losses this is the per-sample mean of squares, so RT_SUM is the sum
 * of per-sample means, not rt_mse's element sum.) Relational losses (SP, RKD, PKT, CC, CRD) couple
 * the samples of a batch and return a 0-dim scalar only.
 *
 * The RT_KD_W_* constants are RepDistiller's weights for each loss (with CE weight 1), the usual
 * starting point; the losses themselves are unweighted. Implementations: src/kd/. */
#ifndef RETORT_KD_H
#define RETORT_KD_H
#include "retort/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RepDistiller's default weights (KD: the KL term's weight with CE weight 0.1; DKD: mdistiller's
 * alpha 1, beta 8 live inside the loss, weight 1; VID and HCL: weight 1 in their reference code). */
#define RT_KD_W_KD 0.9f
#define RT_KD_W_FITNET 100.0f
#define RT_KD_W_AT 1000.0f
#define RT_KD_W_SP 3000.0f
#define RT_KD_W_CC 0.02f
#define RT_KD_W_PKT 30000.0f
#define RT_KD_W_FSP 50.0f
#define RT_KD_W_NST 50.0f
#define RT_KD_W_CRD 0.8f
#define RT_KD_W_VID 1.0f
#define RT_KD_W_RKD 1.0f /* its distance and angle weights 25 and 50 are inside the loss */
#define RT_KD_W_HCL 1.0f
#define RT_KD_W_DKD 1.0f

/* ---- logits (src/kd/logit.c); s, t: (B,K) ---- */

/* Soft target (Hinton): T^2 * KL(softmax(t/T) || softmax(s/T)), the KL summed over classes; RT_MEAN
 * is PyTorch's 'batchmean'. T = 4 is the common default. */
rt_tensor *rt_kd_soft_target(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, float T, rt_reduction red);

/* l2-logit: mean over classes of (s - t)^2 per sample (RT_MEAN = F.mse_loss). */
rt_tensor *rt_kd_l2_logit(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red);

/* Decoupled KD (Zhao et al. 2022), as mdistiller computes it, per sample:
 *   alpha * T^2 * KL(b_t || b_s) + beta * T^2 * KL(q_t || q_s)
 * with b = (p_gt, sum of the other p) from p = softmax(x/T) (TCKD), and q = softmax(x/T - 1000*gt)
 * the distribution over the non-target classes (NCKD). labels (B) in [0,K). mdistiller's CIFAR
 * defaults: alpha 1, beta 8, T 4, and a warm-up factor min(epoch/20, 1) that is the caller's. */
rt_tensor *rt_kd_dkd(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, const int32_t *labels, float alpha, float beta, float T,
                     rt_reduction red);

/* ---- feature maps (src/kd/feature.c); s, t: (B,C,H,W) unless said otherwise ----
 * "Pooled to the smaller": when the spatial sizes differ, the map that is larger in a dim is
 * adaptive-average-pooled to (min(Hs,Ht), min(Ws,Wt)) (RepDistiller pools the larger square map). */

/* FitNet hint: mean of (s - t)^2 over each sample's elements; s and t (B,...) of the same shape
 * (the adapter that maps the student's feature to the teacher's shape is the caller's). */
rt_tensor *rt_kd_fitnet(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red);

/* Feature MSE (MMKD's feature term): as FitNet, but the larger map is pooled to the smaller first;
 * channels must match. */
rt_tensor *rt_kd_feature_mse(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red);

/* Attention transfer (Zagoruyko & Komodakis), p = 2: at(f) = l2_normalize(mean_c(f^2) flattened
 * over HW) (eps 1e-12); per sample the mean over HW of (at(s) - at(t))^2. Channels may differ;
 * maps pooled to the smaller. Summed over stages by the caller; weight beta = 1000. */
rt_tensor *rt_kd_at(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red);

/* Neuron selectivity transfer, polynomial kernel of degree 2: f reshaped to (B,C,HW) and
 * l2-normalised along HW, k(a,b) = (a.b)^2; per sample
 *   mean_{C_t x C_t} k(t,t) + mean_{C_s x C_s} k(s,s) - 2 mean_{C_s x C_t} k(s,t)
 * (the squared MMD). Channels may differ, batch sizes may not; maps pooled to the smaller.
 * RepDistiller detaches the k(t,t) term; here it is part of the loss (same value). Weight 50. */
rt_tensor *rt_kd_nst(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red);

/* FSP (flow of solution procedure, Yim et al.) for one pair of layers, as RepDistiller: the flow
 * matrix of (lo, hi) is G = hi_flat @ lo_flat^T / HW, (B, C_hi, C_lo), after pooling the larger of
 * the two maps to the smaller; per sample the mean over the matrix of (G_s - G_t)^2. Student and
 * teacher must have the same channel counts (their spatial sizes may differ). Weight 50 (summed
 * over pairs of consecutive stages by the caller). */
rt_tensor *rt_kd_fsp(rt_ctx *ctx, rt_tensor *s_lo, rt_tensor *s_hi, rt_tensor *t_lo, rt_tensor *t_hi, rt_reduction red);

/* Hierarchical context loss (ReviewKD), for one pair of same-shape maps: MSE on the full maps plus
 * the MSE of adaptive-average-pooled maps at 4x4, 2x2 and 1x1, a level skipped when l >= min(H,W),
 * the k-th level used weighted 2^-k, all divided by the sum of the weights used. Summed over pairs
 * by the caller; weight 1 (ReviewKD's CIFAR setting). */
rt_tensor *rt_kd_hcl(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red);

/* Variational information distillation (Ahn et al.), as RepDistiller's VIDLoss: a regressor
 * mu = conv1x1(c_in->c_mid) ReLU conv1x1(c_mid->c_mid) ReLU conv1x1(c_mid->c_out) (no biases) of the
 * student's map and a learnable per-channel variance var = softplus(log_scale) + 1e-5; per sample
 * the mean over (C,H,W) of 0.5 * ((mu - t)^2 / var + log var). Maps pooled to the smaller.
 * RepDistiller uses c_mid = c_out = the teacher's channels, init_var 5, weight 1.
 *
 * Parameters are declared into ps under prefix with PyTorch's names: prefix.regressor.{0,2,4}.weight,
 * prefix.log_scale. Order: rt_kd_vid_new, rt_params_finalize(ps), rt_kd_vid_init. */
typedef struct rt_kd_vid {
    int64_t c_in, c_mid, c_out;
    float init_var, eps;
    rt_module *regressor;
    rt_tensor *log_scale; /* (c_out), a view into ps */
} rt_kd_vid;
rt_kd_vid *rt_kd_vid_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t c_in, int64_t c_mid, int64_t c_out,
                         float init_var);
/* PyTorch's default conv init (uniform +-1/sqrt(fan_in)) from rng, log_scale = log(exp(init_var - eps) - 1). */
void rt_kd_vid_init(rt_kd_vid *vid, rt_rng *rng);
rt_tensor *rt_kd_vid_loss(rt_ctx *ctx, rt_kd_vid *vid, rt_tensor *s, rt_tensor *t, rt_reduction red);
void rt_kd_vid_free(rt_kd_vid *vid);

/* ---- relations between the samples of a batch (src/kd/relation.c, crd.c) ----
 * s (B,...) and t (B,...) are flattened to (B,Ds) and (B,Dt); Ds and Dt may differ, B may not.
 * Each returns a 0-dim scalar. */

/* Similarity preserving (Tung & Mori): G = f f^T (B,B), rows l2-normalised (eps 1e-12);
 * loss = sum (G_t - G_s)^2 / B^2. Weight 3000. */
rt_tensor *rt_kd_sp(rt_ctx *ctx, rt_tensor *s, rt_tensor *t);

/* Relational KD (Park et al.), as RepDistiller: distance term smooth_l1(d_s / mean d_s, d_t / mean d_t)
 * over all (i,j) with d the pairwise Euclidean distances (clamped at 1e-12 before the sqrt, the
 * diagonal 0, the mean over the off-diagonal pairs), plus angle term smooth_l1 over all (i,j,k) of
 * <n(f_j - f_i), n(f_k - f_i)> (n = l2-normalise); loss = w_dist * distance + w_angle * angle. The
 * reference defaults are w_dist 25, w_angle 50 (a zero weight skips its term). B >= 2. The angle
 * term holds (B,B,D) differences: use it on pooled (penultimate) features, as RepDistiller does. */
rt_tensor *rt_kd_rkd(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, float w_dist, float w_angle);

/* Probabilistic knowledge transfer (Passalis & Tefas), as RepDistiller: rows divided by (norm +
 * 1e-7), cosine kernels K = (f f^T + 1) / 2 normalised to rows of probabilities P;
 * loss = mean over (B,B) of P_t * log((P_t + 1e-7) / (P_s + 1e-7)). Weight 30000. */
rt_tensor *rt_kd_pkt(rt_ctx *ctx, rt_tensor *s, rt_tensor *t);

/* Correlation congruence (Peng et al.) with the order-P Taylor expansion of a Gaussian RBF kernel:
 * rows l2-normalised, S = f f^T, C = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! * S^p (elementwise);
 * loss = mean over (B,B) of (C_s - C_t)^2. Defaults gamma 0.4, order 2, weight 0.02 (on linear
 * embeddings of both sides, which are the caller's). RepDistiller's committed Correlation class is a
 * simplified stand-in; this is the paper's kernel, as the commonly used reimplementations compute it. */
rt_tensor *rt_kd_cc(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, float gamma, int order);

/* Contrastive representation distillation (Tian et al.), as RepDistiller's CRDLoss:
 *   v_s = l2n(W_s f_s + b_s), v_t = l2n(W_t f_t + b_t)   (embeddings to feat_dim)
 *   for each sample b, K+1 memory rows idx[b,0..K]: the positive is the sample's own data set index,
 *   the K negatives drawn uniformly from [0, n_data) (class-agnostic) with the context's RNG, or given;
 *   P_s[b,k] = exp(M_t[idx[b,k]] . v_s[b] / T) / Z_s, P_t[b,k] = exp(M_s[idx[b,k]] . v_t[b] / T) / Z_t
 *   (M_s, M_t: memory banks of past student and teacher embeddings, n_data x feat_dim); Z set once,
 *   on the first call, to mean(exp(...)) * n_data, as the reference does.
 *   NCE per side, c = K / n_data + 1e-7:
 *     -(1/B) sum_b [ log(P[b,0] / (P[b,0] + c)) + sum_{k>=1} log((K / n_data) / (P[b,k] + c)) ]
 *   loss = NCE_s + NCE_t. After the loss, the memory rows of the batch's samples move to
 *   l2n(m * M[i] + (1 - m) * v) (momentum m = 0.5), unless update_memory is 0.
 * Defaults: feat_dim 128, nce_k 16384, nce_t 0.07, nce_m 0.5; weight 0.8.
 *
 * Parameters and state are declared into ps under prefix with RepDistiller's names:
 *   prefix.embed_s.linear.{weight,bias}, prefix.embed_t.linear.{weight,bias} (parameters),
 *   prefix.contrast.params = [K, T, Z_s, Z_t, momentum], prefix.contrast.memory_v1 (student bank),
 *   prefix.contrast.memory_v2 (teacher bank) (buffers, so checkpoints carry them).
 * Order: rt_kd_crd_new, rt_params_finalize(ps), rt_kd_crd_init. */
typedef struct rt_kd_crd_opts {
    int64_t feat_dim; /* default 128 */
    int64_t nce_k;    /* negatives per sample, default 16384 */
    float nce_t;      /* temperature, default 0.07 */
    float nce_m;      /* memory momentum, default 0.5 */
} rt_kd_crd_opts;
typedef struct rt_kd_crd {
    int64_t s_dim, t_dim, n_data;
    rt_kd_crd_opts o;
    int update_memory; /* 1 after new; 0 freezes the banks (look-ahead passes, gradient checks) */
    rt_module *embed_s, *embed_t;
    rt_tensor *params, *memory_s, *memory_t; /* buffer views into ps */
} rt_kd_crd;
/* opts NULL (or zero fields) = the defaults above. */
rt_kd_crd *rt_kd_crd_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t s_dim, int64_t t_dim, int64_t n_data,
                         const rt_kd_crd_opts *opts);
/* Embeddings as PyTorch's Linear default; memory uniform in +-1/sqrt(feat_dim/3); Z unset (-1). */
void rt_kd_crd_init(rt_kd_crd *crd, rt_rng *rng);
/* f_s (B,...) with s_dim features, f_t (B,...) with t_dim; idx (B) the samples' data set indices
 * (rt_loader_indices); contrast_idx NULL (draw negatives) or (B, K+1) memory rows with column 0
 * the positive, as RepDistiller's CIFAR100InstanceSample provides. */
rt_tensor *rt_kd_crd_loss(rt_ctx *ctx, rt_kd_crd *crd, rt_tensor *f_s, rt_tensor *f_t, const int64_t *idx,
                          const int64_t *contrast_idx);
void rt_kd_crd_free(rt_kd_crd *crd);

#ifdef __cplusplus
}
#endif
#endif
