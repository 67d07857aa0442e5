# Observability: the metrics registry, its HTTP endpoint, a real Prometheus scraping it, and the
# event log (label "metrics").
quorumreg_test_group(test_observability SOURCES test_metrics.cpp test_events.cpp LIBS quorumreg::metrics_http quorumreg_etcd_separate)
quorumreg_suite(test_observability metrics TIMEOUT 300)
quorumreg_suite(test_observability events LABELS metrics)
