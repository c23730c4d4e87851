package org.edgeage.jvm;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;

import javax.imageio.ImageIO;

import org.edgeage.core.Bundle;
import org.edgeage.core.CheckRun;
import org.edgeage.core.Image;
import org.edgeage.core.Json;
import org.edgeage.core.ModelRunner;

/**
 * The app's check mode on the JVM: the same core code (bundle, sha256 check, preprocessing,
 * readout, statistics, result JSON) with an ONNX model run by OpenCV DNN instead of a phone
 * runtime. Compare the result with `edgeage device-check --from-json`.
 *
 *   java org.edgeage.jvm.JvmCheck BUNDLE_DIR OUT.json [count=0 (all)] [warmup=3] [threads=1]
 */
public final class JvmCheck {
    public static void main(String[] a) throws Exception {
        if (a.length < 2) {
            System.err.println("usage: JvmCheck BUNDLE_DIR OUT.json [count] [warmup] [threads]");
            System.exit(2);
        }
        Bundle b = Bundle.open(new File(a[0]));
        if (!"onnx".equals(b.backend))
            throw new IllegalArgumentException(b.model + ": the JVM check runs ONNX models (bundle an onnx-opencv46 artifact)");
        int count = a.length > 2 ? Integer.parseInt(a[2]) : 0, warmup = a.length > 3 ? Integer.parseInt(a[3]) : 3;
        Map<String, Object> device = new LinkedHashMap<String, Object>();
        for (String k : new String[] {"os.name", "os.version", "os.arch", "java.version", "java.vm.name"})
            device.put(k.replace('.', '_'), System.getProperty(k));
        device.put("cpus", Runtime.getRuntime().availableProcessors());
        ModelRunner runner = new OpenCvRunner(b.model, a.length > 4 ? Integer.parseInt(a[4]) : 1);
        try {
            Map<String, Object> res = CheckRun.run(b, runner, new CheckRun.Decoder() {
                @Override
                public Image decode(File f) throws IOException {
                    BufferedImage im = ImageIO.read(f);
                    if (im == null) throw new IOException(f + ": not a readable image");
                    int w = im.getWidth(), h = im.getHeight();
                    return Image.fromArgb(w, h, im.getRGB(0, 0, w, h, null, 0, w));
                }
            }, device, count, warmup, true, null);
            Json.writeFile(new File(a[1]), res);
            Map<String, Object> s = Json.obj(res, "summary");
            System.out.printf("jvm check: n=%d MAE %.4f CS(5) %.3f latency p50 %.2f ms -> %s%n", (int) Json.num(s, "n"),
                    Json.num(s, "mae"), Json.num(s, "cs5"), Json.num(Json.obj(s, "latency_ms"), "p50"), a[1]);
        } finally {
            runner.close();
        }
    }
}
