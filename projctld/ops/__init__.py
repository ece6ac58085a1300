"""The operator's tools: doctor, metrics, the Prometheus format and endpoint, the unit installer."""
