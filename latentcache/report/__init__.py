"""Reports: training curves and confusion matrices (:mod:`latentcache.report.training`)."""
