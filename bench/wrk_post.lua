-- wrk script for bench/gateway.py: POST a CloudFlow StartExecution form body and
-- print the run's numbers in one parseable line (latency in microseconds).
-- BENCH_BODY overrides the body (the executor and the proxies ignore its content).

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "FlowName=f1&Qualifier=prod&Input=%7B%7D"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d bytes=%d errors_connect=%d errors_read=%d " ..
      "errors_write=%d errors_status=%d errors_timeout=%d p50_us=%d p90_us=%d p99_us=%d " ..
      "p999_us=%d max_us=%d mean_us=%.1f stdev_us=%.1f\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
      latency.stdev))
end
