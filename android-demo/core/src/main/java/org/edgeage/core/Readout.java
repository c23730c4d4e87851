package org.edgeage.core;

import java.util.Map;

/** Raw model outputs of one image -> age, for every readout type of edgeage/readout.py
 *  (computed in float64; Python computes in float32, so ages agree to ~1e-5 years). */
public final class Readout {
    public final String type;
    public final double ageMin;

    public Readout(Map<String, Object> spec) {
        type = Json.str(spec, "type");
        ageMin = spec.containsKey("age_min") ? Json.num(spec, "age_min") : 0;
        if (!type.equals("expectation") && !type.equals("identity") && !type.equals("coral") && !type.equals("mean"))
            throw new IllegalArgumentException("unknown readout type " + type + "; known: expectation, identity, coral, mean");
    }

    public double age(float[] out) {
        double acc = 0;
        if (type.equals("expectation")) {
            double max = Double.NEGATIVE_INFINITY, z = 0;
            for (float v : out) max = Math.max(max, v);
            for (int i = 0; i < out.length; i++) {
                double e = Math.exp(out[i] - max);
                z += e;
                acc += e * (i + ageMin);
            }
            return acc / z;
        }
        if (type.equals("identity")) return out[0];
        if (type.equals("coral")) {
            for (float v : out) acc += 1.0 / (1.0 + Math.exp(-v));
            return ageMin + acc;
        }
        for (float v : out) acc += v;  // mean
        return acc / out.length;
    }

    /** Arg-max bin where the readout has bins, else the age rounded half to even (argmax_bin). */
    public long argmax(float[] out) {
        if (!type.equals("expectation")) return (long) Math.rint(age(out));
        int best = 0;
        for (int i = 1; i < out.length; i++) if (out[i] > out[best]) best = i;
        return best;
    }
}
