/* Retort: knowledge distillation in C. The umbrella header. */
#ifndef RETORT_H
#define RETORT_H
#include "retort/core.h"
#include "retort/tensor.h"
#include "retort/autograd.h"
#include "retort/ops.h"
#include "retort/nn.h"
#include "retort/io.h"
#endif
