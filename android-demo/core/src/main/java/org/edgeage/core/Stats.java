package org.edgeage.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/** Check statistics as in edgeage/metrics.py, and latency percentiles (numpy's default, linear). */
public final class Stats {
    private Stats() {}

    public static double mae(double[] pred, double[] truth) {
        double s = 0;
        for (int i = 0; i < pred.length; i++) s += Math.abs(pred[i] - truth[i]);
        return s / pred.length;
    }

    /** Share of predictions with |error| <= t years. */
    public static double cs(double[] pred, double[] truth, double t) {
        int n = 0;
        for (int i = 0; i < pred.length; i++) if (Math.abs(pred[i] - truth[i]) <= t) n++;
        return (double) n / pred.length;
    }

    /** q-th percentile (0..100), linear interpolation between order statistics (np.percentile). */
    public static double percentile(double[] values, double q) {
        double[] a = values.clone();
        Arrays.sort(a);
        double pos = (a.length - 1) * q / 100.0;
        int lo = (int) Math.floor(pos), hi = Math.min(lo + 1, a.length - 1);
        return a[lo] + (a[hi] - a[lo]) * (pos - lo);
    }

    public static Map<String, Object> latency(double[] ms) {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        double sum = 0;
        for (double v : ms) sum += v;
        m.put("p50", percentile(ms, 50));
        m.put("p90", percentile(ms, 90));
        m.put("p99", percentile(ms, 99));
        m.put("mean", sum / ms.length);
        m.put("min", percentile(ms, 0));
        m.put("max", percentile(ms, 100));
        return m;
    }
}
