/* NCE kernels for contrastive representation distillation (CRD): scores of embeddings against rows
 * of a memory bank, the NCE loss over them with its gradient, the gradient's gather back onto the
 * embeddings, and the momentum update of the bank. Samples run in parallel (OpenMP over the batch),
 * each summed in a fixed order, so results do not depend on the thread count. */
#ifndef RT_KERNELS_NCE_H
#define RT_KERNELS_NCE_H
#include <stdint.h>

// mem (N,D), v (B,D), idx (B,K1) rows of mem; e (B,K1) overwritten: exp(mem[idx[b,k]] . v[b] / T)
void rt_nce_scores(int64_t B, int64_t K1, int64_t D, const float *mem, const float *v, const int64_t *idx, float T,
                   float *e);
void rt_nce_scores_ref(int64_t B, int64_t K1, int64_t D, const float *mem, const float *v, const int64_t *idx, float T,
                       float *e);

// e (B,K1), column 0 the positive; loss (B) overwritten with
//   -log(P0 / (P0 + c)) - sum_{k>=1} log(mpn / (Pk + c)),  P = e / Z, c = mpn + eps;
// ds (B,K1) overwritten (if non-NULL) with d loss[b] / d score[b,k], score = T log(e Z)
void rt_nce_loss(int64_t B, int64_t K1, const float *e, double Z, double mpn, double eps, double T, double *loss,
                 float *ds);

// ds (B,K1), mem (N,D), idx (B,K1); gv (B,D) overwritten: scale * sum_k ds[b,k] mem[idx[b,k]]
void rt_nce_gather(int64_t B, int64_t K1, int64_t D, const float *ds, const float *mem, const int64_t *idx, float scale,
                   float *gv);
void rt_nce_gather_ref(int64_t B, int64_t K1, int64_t D, const float *ds, const float *mem, const int64_t *idx,
                       float scale, float *gv);

// mem (N,D), v (B,D), y (B) rows of mem, work (B,D) scratch: every row y[b] <- l2n(m mem[y[b]] + (1-m) v[b])
// from the rows as they were before the call (a repeated index: the last sample wins)
void rt_nce_memory_update(int64_t B, int64_t D, float *mem, const float *v, const int64_t *y, float m, float *work);

#endif
