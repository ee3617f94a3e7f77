/* The training run's config keys, shared by `retort train` and `retort distill` (whose student is
 * model.*). The includer defines F(key, type, member, default, help). */
#ifndef RT_TRAIN_FIELDS_H
#define RT_TRAIN_FIELDS_H
#define RT_TRAIN_FIELDS(F) \
    F("data.name", RT_CFG_STR, data.name, "fashion-mnist", "fashion-mnist | idx | cifar10 | cifar100 | csv | synth") \
    F("data.dir", RT_CFG_STR, data.dir, "", "data directory (idx, cifar) or file (csv); empty = the default") \
    F("data.val", RT_CFG_INT, data.val, "0", "training samples held out for validation") \
    F("data.subset", RT_CFG_INT, data.subset, "0", "train on this many samples only (0 = all)") \
    F("data.test_subset", RT_CFG_INT, data.test_subset, "0", "evaluate on this many test samples (0 = all)") \
    F("data.crop_pad", RT_CFG_INT, data.crop_pad, "0", "random crop padding (0 = off)") \
    F("data.hflip", RT_CFG_BOOL, data.hflip, "false", "random horizontal flip") \
    F("data.normalize", RT_CFG_BOOL, data.normalize, "true", "per-channel normalisation") \
    F("model.arch", RT_CFG_STR, arch, "resnet8", "architecture (retort --help lists them)") \
    F("model.hidden", RT_CFG_INT, hidden, "256", "MLP hidden width") \
    F("optim.kind", RT_CFG_STR, optim, "sgd", "sgd | adam | adamw") \
    F("optim.lr", RT_CFG_FLOAT, lr, "0.05", "base learning rate") \
    F("optim.momentum", RT_CFG_FLOAT, momentum, "0.9", "SGD momentum") \
    F("optim.nesterov", RT_CFG_BOOL, nesterov, "false", "Nesterov momentum") \
    F("optim.weight_decay", RT_CFG_FLOAT, weight_decay, "5e-4", "weight decay") \
    F("optim.beta1", RT_CFG_FLOAT, beta1, "0.9", "Adam beta1") \
    F("optim.beta2", RT_CFG_FLOAT, beta2, "0.999", "Adam beta2") \
    F("sched.kind", RT_CFG_STR, sched, "cosine", "constant | multistep | cosine | poly") \
    F("sched.milestones", RT_CFG_FLOATLIST, milestones, "[]", "multistep epochs") \
    F("sched.gamma", RT_CFG_FLOAT, gamma, "0.1", "multistep factor") \
    F("sched.eta_min", RT_CFG_FLOAT, eta_min, "0", "cosine floor") \
    F("sched.power", RT_CFG_FLOAT, power, "1", "poly power") \
    F("sched.warmup", RT_CFG_FLOAT, warmup, "0", "linear warm-up epochs") \
    F("epochs", RT_CFG_INT, epochs, "10", "training epochs") \
    F("batch_size", RT_CFG_INT, batch_size, "128", "training batch size") \
    F("eval_batch", RT_CFG_INT, eval_batch, "500", "evaluation batch size") \
    F("seed", RT_CFG_INT, seed, "1", "seed of everything random") \
    F("threads", RT_CFG_INT, threads, "0", "threads (0 = OpenMP's default)") \
    F("stop_after", RT_CFG_INT, stop_after, "0", "stop after this many epochs of this invocation (0 = never); --resume continues") \
    F("out_dir", RT_CFG_STR, out_dir, "runs/train", "run directory")
#endif
