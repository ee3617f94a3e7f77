/* Retort: knowledge distillation in C. The umbrella header. */
#ifndef RETORT_H
#define RETORT_H
#include "retort/core.h"
#include "retort/tensor.h"
#include "retort/autograd.h"
#include "retort/ops.h"
#include "retort/nn.h"
#include "retort/io.h"
#include "retort/optim.h"
#include "retort/data.h"
#include "retort/config.h"
#include "retort/train.h"
#include "retort/kd.h"
#include "retort/aggregate.h"
#include "retort/distill.h"
#include "retort/plot.h"
#endif
