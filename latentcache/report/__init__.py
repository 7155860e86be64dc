"""Reports: training curves and confusion matrices (:mod:`latentcache.report.training`) and
rate–accuracy reports over recipe runs, ours beside the papers'
(:mod:`latentcache.report.rate_accuracy`)."""
