/* Reference convolution kernels: direct loops in double, written to be checked by eye against
 * the definition of F.conv2d. Slow; used as the oracle for src/kernels/conv.c. */
#include "kernels/conv.h"

int rt_conv2d_shape_finish(rt_conv2d_shape *s) {
    if (s->N < 0 || s->C <= 0 || s->H <= 0 || s->W <= 0 || s->OC <= 0 || s->KH <= 0 || s->KW <= 0 || s->sh <= 0 ||
        s->sw <= 0 || s->ph < 0 || s->pw < 0 || s->dh <= 0 || s->dw <= 0 || s->groups <= 0 || s->C % s->groups ||
        s->OC % s->groups)
        return -1;
    int64_t eh = s->H + 2 * s->ph - s->dh * (s->KH - 1), ew = s->W + 2 * s->pw - s->dw * (s->KW - 1);
    if (eh <= 0 || ew <= 0) return -1;
    s->OH = (eh - 1) / s->sh + 1;
    s->OW = (ew - 1) / s->sw + 1;
    return 0;
}

// in (N,C,H,W), w (OC,C/g,KH,KW), bias (OC) or NULL, out (N,OC,OH,OW); overwrites out
void rt_conv2d_forward_ref(const rt_conv2d_shape *s, float *out, const float *in, const float *w, const float *bias) {
    int64_t Cg = s->C / s->groups, OCg = s->OC / s->groups;
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t oc = 0; oc < s->OC; oc++) {
            int64_t g = oc / OCg;
            for (int64_t oh = 0; oh < s->OH; oh++)
                for (int64_t ow = 0; ow < s->OW; ow++) {
                    double acc = bias ? bias[oc] : 0.0;
                    for (int64_t icg = 0; icg < Cg; icg++) {
                        const float *ip = in + (n * s->C + g * Cg + icg) * s->H * s->W;
                        const float *wp = w + (oc * Cg + icg) * s->KH * s->KW;
                        for (int64_t kh = 0; kh < s->KH; kh++) {
                            int64_t ih = oh * s->sh - s->ph + kh * s->dh;
                            if (ih < 0 || ih >= s->H) continue;
                            for (int64_t kw = 0; kw < s->KW; kw++) {
                                int64_t iw = ow * s->sw - s->pw + kw * s->dw;
                                if (iw < 0 || iw >= s->W) continue;
                                acc += (double)ip[ih * s->W + iw] * wp[kh * s->KW + kw];
                            }
                        }
                    }
                    out[((n * s->OC + oc) * s->OH + oh) * s->OW + ow] = (float)acc;
                }
        }
}

// gout (N,OC,OH,OW), w (OC,C/g,KH,KW), gin (N,C,H,W); accumulates into gin
void rt_conv2d_backward_data_ref(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w) {
    if (!gin) return;
    int64_t Cg = s->C / s->groups, OCg = s->OC / s->groups;
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t c = 0; c < s->C; c++) {
            int64_t g = c / Cg, icg = c % Cg;
            for (int64_t ih = 0; ih < s->H; ih++)
                for (int64_t iw = 0; iw < s->W; iw++) {
                    /* every (oc, kh, kw, oh, ow) with oh*sh - ph + kh*dh == ih (and the same for w) */
                    double acc = 0;
                    for (int64_t ocg = 0; ocg < OCg; ocg++) {
                        int64_t oc = g * OCg + ocg;
                        const float *gp = gout + (n * s->OC + oc) * s->OH * s->OW;
                        const float *wp = w + (oc * Cg + icg) * s->KH * s->KW;
                        for (int64_t kh = 0; kh < s->KH; kh++) {
                            int64_t th = ih + s->ph - kh * s->dh;
                            if (th < 0 || th % s->sh || th / s->sh >= s->OH) continue;
                            for (int64_t kw = 0; kw < s->KW; kw++) {
                                int64_t tw = iw + s->pw - kw * s->dw;
                                if (tw < 0 || tw % s->sw || tw / s->sw >= s->OW) continue;
                                acc += (double)gp[(th / s->sh) * s->OW + tw / s->sw] * wp[kh * s->KW + kw];
                            }
                        }
                    }
                    gin[((n * s->C + c) * s->H + ih) * s->W + iw] += (float)acc;
                }
        }
}

// gout (N,OC,OH,OW), in (N,C,H,W), gw (OC,C/g,KH,KW), gb (OC); accumulates into gw and gb
void rt_conv2d_backward_weight_ref(const rt_conv2d_shape *s, float *gw, float *gb, const float *gout, const float *in) {
    int64_t Cg = s->C / s->groups, OCg = s->OC / s->groups, OHW = s->OH * s->OW;
    for (int64_t oc = 0; gw && oc < s->OC; oc++) {
        int64_t g = oc / OCg;
        for (int64_t icg = 0; icg < Cg; icg++)
            for (int64_t kh = 0; kh < s->KH; kh++)
                for (int64_t kw = 0; kw < s->KW; kw++) {
                    double acc = 0;
                    for (int64_t n = 0; n < s->N; n++) {
                        const float *gp = gout + (n * s->OC + oc) * OHW;
                        const float *ip = in + (n * s->C + g * Cg + icg) * s->H * s->W;
                        for (int64_t oh = 0; oh < s->OH; oh++) {
                            int64_t ih = oh * s->sh - s->ph + kh * s->dh;
                            if (ih < 0 || ih >= s->H) continue;
                            for (int64_t ow = 0; ow < s->OW; ow++) {
                                int64_t iw = ow * s->sw - s->pw + kw * s->dw;
                                if (iw < 0 || iw >= s->W) continue;
                                acc += (double)gp[oh * s->OW + ow] * ip[ih * s->W + iw];
                            }
                        }
                    }
                    gw[((oc * Cg + icg) * s->KH + kh) * s->KW + kw] += (float)acc;
                }
    }
    for (int64_t oc = 0; gb && oc < s->OC; oc++) {
        double acc = 0;
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t i = 0; i < OHW; i++) acc += gout[(n * s->OC + oc) * OHW + i];
        gb[oc] += (float)acc;
    }
}
