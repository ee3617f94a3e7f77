/* Differentiable ops. Each takes the context and its input tensors, computes its output eagerly in
 * the step arena and, in grad mode, records itself on the tape. On error an op returns NULL with the
 * context's message set; an op given a NULL input returns NULL at once (errors propagate, so a chain
 * of calls can be checked once at the end). Implementations: src/ops/<family>.c over the kernels in
 * src/kernels/. */
#ifndef RETORT_OPS_H
#define RETORT_OPS_H
#include "retort/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- shapes and views (src/ops/shape.c) ---- */
/* One entry of shape may be -1 (inferred). A view when x is contiguous, else a copy. */
rt_tensor *rt_reshape(rt_ctx *ctx, rt_tensor *x, int ndim, const int64_t *shape);
rt_tensor *rt_flatten(rt_ctx *ctx, rt_tensor *x, int start_dim); /* dims >= start_dim into one */
rt_tensor *rt_transpose(rt_ctx *ctx, rt_tensor *x, int d0, int d1); /* view */
rt_tensor *rt_slice(rt_ctx *ctx, rt_tensor *x, int dim, int64_t start, int64_t end); /* view */
rt_tensor *rt_contiguous(rt_ctx *ctx, rt_tensor *x); /* x itself when already contiguous */
rt_tensor *rt_concat(rt_ctx *ctx, int n, rt_tensor *const *xs, int dim);

/* ---- dense products (src/ops/linear.c) ---- */
/* a (...,M,K) @ b (...,K,N) -> (...,M,N); batch dims must match exactly (or b is 2-D, shared). */
rt_tensor *rt_matmul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
/* x (B,IN), w (OUT,IN), bias (OUT) or NULL -> (B,OUT), as torch.nn.functional.linear. */
rt_tensor *rt_linear(rt_ctx *ctx, rt_tensor *x, rt_tensor *w, rt_tensor *bias);

/* ---- convolution, pooling, resizing (src/ops/conv.c, pool.c, resize.c) ---- */
typedef struct rt_conv2d_args {
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups; /* zeros mean 1,1,0,0,1,1,1 */
} rt_conv2d_args;
/* x (N,C,H,W), w (OC,C/groups,KH,KW), bias (OC) or NULL -> (N,OC,OH,OW). */
rt_tensor *rt_conv2d(rt_ctx *ctx, rt_tensor *x, rt_tensor *w, rt_tensor *bias, const rt_conv2d_args *a);
/* Eval-mode conv -> batch norm (-> + residual) (-> ReLU) as one forward-only op: the batch norm
 * (gamma, beta (OC) or NULL, running mean and var, eps) folded into a copy of the weights,
 * w * gamma / sqrt(var + eps), and a bias, beta + (bias - mean) * gamma / sqrt(var + eps), made anew
 * on every call; the residual (the output's shape, or NULL) and the ReLU applied as the convolution
 * writes (rt_conv2d_forward_epi). The result equals the unfused ops up to rounding. Records nothing:
 * an error (RT_ESTATE) where a node would be recorded (grad mode on and an input requires a gradient). */
rt_tensor *rt_conv2d_bn_eval(rt_ctx *ctx, rt_tensor *x, rt_tensor *w, rt_tensor *bias, const rt_conv2d_args *a,
                             rt_tensor *gamma, rt_tensor *beta, const float *running_mean, const float *running_var,
                             float eps, rt_tensor *residual, int relu);
/* Pooling as PyTorch's (avg: count_include_pad = true; no ceil_mode; stride 0 = the window size).
 * Max-pool ties: first wins. */
rt_tensor *rt_maxpool2d(rt_ctx *ctx, rt_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw);
rt_tensor *rt_avgpool2d(rt_ctx *ctx, rt_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw);
rt_tensor *rt_adaptive_avgpool2d(rt_ctx *ctx, rt_tensor *x, int64_t oh, int64_t ow);
typedef enum { RT_RESIZE_NEAREST = 0, RT_RESIZE_BILINEAR = 1 } rt_resize_mode;
/* As F.interpolate; align_corners only matters for bilinear. */
rt_tensor *rt_resize(rt_ctx *ctx, rt_tensor *x, int64_t oh, int64_t ow, rt_resize_mode mode, int align_corners);

/* ---- normalisation and dropout (src/ops/norm.c) ---- */
/* x (N,C) or (N,C,H,W); gamma, beta (C) or NULL. running_mean/var (C floats) are updated in
 * training mode with PyTorch's momentum convention (unbiased variance), used in eval mode. */
rt_tensor *rt_batchnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *gamma, rt_tensor *beta, float *running_mean,
                        float *running_var, int training, float momentum, float eps);
/* relu(batchnorm(x) + residual) as one op: one output pass, and one backward pass that folds the
 * ReLU's mask into the batch norm's reductions. residual (x's shape, not overlapping it unless it is
 * x) may be NULL: relu(batchnorm(x)). Other arguments and the running-statistics update as
 * rt_batchnorm. inplace: x is the caller's temporary; when no node is recorded (grad mode off, or no
 * input requires a gradient) and x is no leaf, the result overwrites x and x is returned, so an
 * inference forward allocates nothing here. */
rt_tensor *rt_batchnorm_relu(rt_ctx *ctx, rt_tensor *x, rt_tensor *residual, rt_tensor *gamma, rt_tensor *beta,
                             float *running_mean, float *running_var, int training, float momentum, float eps,
                             int inplace);
/* Inverted dropout with the context's RNG; identity when !training or p == 0. */
rt_tensor *rt_dropout(rt_ctx *ctx, rt_tensor *x, float p, int training);

/* ---- elementwise (src/ops/elementwise.c) ---- */
/* Binary ops broadcast as NumPy/PyTorch do. */
rt_tensor *rt_add(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_sub(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_mul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_div(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_add_scalar(rt_ctx *ctx, rt_tensor *x, float s);
rt_tensor *rt_mul_scalar(rt_ctx *ctx, rt_tensor *x, float s);
rt_tensor *rt_pow_scalar(rt_ctx *ctx, rt_tensor *x, float p); /* x^p; p non-integer needs x > 0 */
rt_tensor *rt_sqrt(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_exp(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_log(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_abs(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_neg(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_relu(rt_ctx *ctx, rt_tensor *x);
/* relu(a + b) as one op (a residual block's end); a and b of one shape (no broadcasting). inplace:
 * a is the caller's temporary, overwritten by the result (and returned) as in rt_batchnorm_relu. */
rt_tensor *rt_add_relu(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, int inplace);
rt_tensor *rt_leaky_relu(rt_ctx *ctx, rt_tensor *x, float slope);
rt_tensor *rt_sigmoid(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_tanh(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_gelu(rt_ctx *ctx, rt_tensor *x); /* exact (erf) form */

/* ---- reductions and normalisers (src/ops/reduce.c) ---- */
rt_tensor *rt_sum(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim);
rt_tensor *rt_mean(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim);
rt_tensor *rt_mean_sq(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim); /* mean of x^2 along dim, fused */
rt_tensor *rt_max(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim); /* values; ties: first index */
rt_tensor *rt_sum_all(rt_ctx *ctx, rt_tensor *x);  /* scalar, shape () */
rt_tensor *rt_mean_all(rt_ctx *ctx, rt_tensor *x); /* scalar, shape () */
/* x / max(||x||_2 along dim, eps), as F.normalize. */
rt_tensor *rt_l2_normalize(rt_ctx *ctx, rt_tensor *x, int dim, float eps);
/* softmax(x / T) and log_softmax(x / T) along dim. */
rt_tensor *rt_softmax(rt_ctx *ctx, rt_tensor *x, int dim, float T);
rt_tensor *rt_log_softmax(rt_ctx *ctx, rt_tensor *x, int dim, float T);

/* ---- losses (src/ops/loss.c) ----
 * Reductions: RT_MEAN = mean over all elements (KL: sum over classes, mean over the batch, as
 * PyTorch's 'batchmean'); RT_SUM = sum over all; RT_NONE = one value per sample, shape (B,): for CE
 * and KL the sample's loss, for MSE/L1/smooth-L1 the mean over the sample's elements. */
typedef enum { RT_MEAN = 0, RT_SUM = 1, RT_NONE = 2 } rt_reduction;
/* logits (B,K), labels in [0,K). label_smoothing as PyTorch. */
rt_tensor *rt_cross_entropy(rt_ctx *ctx, rt_tensor *logits, const int32_t *labels, float label_smoothing,
                            rt_reduction red);
/* Soft-label cross-entropy: -sum_k target_k log_softmax(logits)_k; target (B,K) probabilities. */
rt_tensor *rt_soft_cross_entropy(rt_ctx *ctx, rt_tensor *logits, rt_tensor *target, rt_reduction red);
/* KL(target || input): sum target * (log target - input); input = log-probabilities (B,K),
 * target = probabilities (B,K), zero entries contribute 0. Gradient flows to both. */
rt_tensor *rt_kl_div(rt_ctx *ctx, rt_tensor *input_logp, rt_tensor *target_p, rt_reduction red);
rt_tensor *rt_mse(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, rt_reduction red);
rt_tensor *rt_l1(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, rt_reduction red);
/* Smooth-L1 with threshold beta (Huber(delta) = delta * smooth_l1(beta = delta)). */
rt_tensor *rt_smooth_l1(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, float beta, rt_reduction red);
rt_tensor *rt_huber(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, float delta, rt_reduction red);

#ifdef __cplusplus
}
#endif
#endif
