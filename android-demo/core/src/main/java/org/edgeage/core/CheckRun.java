package org.edgeage.core;

import java.io.File;
import java.io.IOException;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TimeZone;

/**
 * Check mode: every labelled canonical crop of a bundle through the Java preprocessing, the model
 * and the readout, each inference timed. The result JSON ("edgeage-check-result/1"):
 * <pre>
 * { "format": "edgeage-check-result/1", "created": ISO-8601 UTC,
 *   "device": {...free-form: manufacturer, model, sdk_int, abis / os, arch, java},
 *   "runtime": {"backend", "runner", "warmup"},
 *   "model": {"file", "sha256", "size", "sha256_verified", "target", "precision", "source"},
 *   "preprocess": manifest preprocess, "readout": manifest readout,
 *   "images": [{"file", "true_age", "pred_age", "argmax", "latency_ms", "preprocess_ms",
 *               "output": raw outputs (only with keepOutputs)}],
 *   "summary": {"n", "mae", "cs5", "latency_ms": {"p50", "p90", "p99", "mean", "min", "max"}} }
 * </pre>
 * latency_ms times {@link ModelRunner#run} alone; preprocess_ms the Java preprocessing.
 */
public final class CheckRun {
    public static final String FORMAT = "edgeage-check-result/1";

    /** Decodes a check image (lossless PNG) to RGB. */
    public interface Decoder {
        Image decode(File f) throws IOException;
    }

    /** Progress callback (may be null). */
    public interface Progress {
        void done(int i, int n);
    }

    private CheckRun() {}

    public static Map<String, Object> run(Bundle b, ModelRunner runner, Decoder decoder, Map<String, Object> device,
                                          int count, int warmup, boolean keepOutputs, Progress progress) throws Exception {
        List<Bundle.Sample> samples = b.checkSamples();
        if (count > 0 && count < samples.size()) samples = samples.subList(0, count);
        if (samples.isEmpty()) throw new IOException(b.dir + "/check/labels.csv lists no images");
        int[] shape = b.normalize.shape();
        List<Object> images = new ArrayList<Object>();
        double[] pred = new double[samples.size()], truth = new double[pred.length], lat = new double[pred.length];
        for (int i = 0; i < samples.size(); i++) {
            Bundle.Sample s = samples.get(i);
            Image crop = decoder.decode(b.checkImage(s));
            if (crop.width != b.crop.cropSize || crop.height != b.crop.cropSize)
                throw new IOException(b.checkImage(s) + ": " + crop.width + "x" + crop.height + ", expected a "
                        + b.crop.cropSize + "px canonical crop");
            long t0 = System.nanoTime();
            float[] x = Preprocess.modelInput(crop, b.normalize);
            long t1 = System.nanoTime();
            for (int w = 0; i == 0 && w < warmup; w++) runner.run(x, shape);
            long t2 = System.nanoTime();
            float[] out = runner.run(x, shape);
            long t3 = System.nanoTime();
            pred[i] = b.readout.age(out);
            truth[i] = s.age;
            lat[i] = (t3 - t2) / 1e6;
            Map<String, Object> rec = new LinkedHashMap<String, Object>();
            rec.put("file", s.file);
            rec.put("true_age", s.age);
            rec.put("pred_age", pred[i]);
            rec.put("argmax", b.readout.argmax(out));
            rec.put("latency_ms", lat[i]);
            rec.put("preprocess_ms", (t1 - t0) / 1e6);
            if (keepOutputs) rec.put("output", out);
            images.add(rec);
            if (progress != null) progress.done(i + 1, samples.size());
        }
        Map<String, Object> res = new LinkedHashMap<String, Object>();
        res.put("format", FORMAT);
        SimpleDateFormat iso = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.ROOT);
        iso.setTimeZone(TimeZone.getTimeZone("UTC"));
        res.put("created", iso.format(new Date()));
        res.put("device", device);
        Map<String, Object> rt = new LinkedHashMap<String, Object>();
        rt.put("backend", b.backend);
        rt.put("runner", runner.describe());
        rt.put("warmup", warmup);
        res.put("runtime", rt);
        Map<String, Object> model = new LinkedHashMap<String, Object>();
        model.put("file", b.model.getName());
        model.put("sha256", b.sha256);
        model.put("size", b.model.length());
        model.put("sha256_verified", true);
        model.put("target", b.target);
        model.put("precision", b.precision);
        model.put("source", b.artifact.containsKey("source") ? b.artifact.get("source") : b.manifest.get("source"));
        res.put("model", model);
        res.put("preprocess", b.manifest.get("preprocess"));
        res.put("readout", b.manifest.get("readout"));
        res.put("images", images);
        Map<String, Object> sum = new LinkedHashMap<String, Object>();
        sum.put("n", pred.length);
        sum.put("mae", Stats.mae(pred, truth));
        sum.put("cs5", Stats.cs(pred, truth, 5.0));
        sum.put("latency_ms", Stats.latency(lat));
        res.put("summary", sum);
        return res;
    }
}
