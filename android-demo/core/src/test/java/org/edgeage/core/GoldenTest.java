package org.edgeage.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;

import org.junit.BeforeClass;
import org.junit.Test;

/** The Java core against golden vectors written by android-demo/tools/make_golden.py from real
 *  face images (-Dedgeage.golden=DIR). */
public class GoldenTest {
    static File dir;
    static Map<String, Object> g;

    @BeforeClass
    @SuppressWarnings("unchecked")
    public static void load() throws IOException {
        String d = System.getProperty("edgeage.golden");
        if (d == null || !new File(d, "golden.json").isFile())
            fail("golden vectors not found (-Dedgeage.golden=" + d + "): run android-demo/tools/make_golden.py first");
        dir = new File(d);
        g = (Map<String, Object>) Json.parse(new File(dir, "golden.json"));
    }

    static ByteBuffer bytes(Object entry, String key) throws IOException {
        return ByteBuffer.wrap(Io.readAll(new File(dir, Json.str(entry, key)))).order(ByteOrder.LITTLE_ENDIAN);
    }

    static float[] f32(Object entry, String key) throws IOException {
        ByteBuffer b = bytes(entry, key);
        float[] a = new float[b.remaining() / 4];
        b.asFloatBuffer().get(a);
        return a;
    }

    static List<?> list(String key) {
        return (List<?>) g.get(key);
    }

    static Image image(int index) throws IOException {
        Object im = list("images").get(index);
        return new Image((int) Json.num(im, "w"), (int) Json.num(im, "h"), bytes(im, "rgb").array());
    }

    static double[] box(Object entry) {
        return Json.get(entry, "box") == null ? null : Json.nums(entry, "box");
    }

    @Test
    public void resizeWeightsMatchBitForBit() throws IOException {
        for (Object e : list("resize_weights")) {
            int nIn = (int) Json.num(e, "n_in"), nOut = (int) Json.num(e, "n_out");
            double[][] w = Preprocess.resizeWeights(nIn, nOut);
            ByteBuffer b = bytes(e, "expected");
            double maxDiff = 0;
            for (int o = 0; o < nOut; o++)
                for (int i = 0; i < nIn; i++) maxDiff = Math.max(maxDiff, Math.abs(w[o][i] - b.getDouble()));
            assertTrue(nIn + "->" + nOut + " max diff " + maxDiff, maxDiff <= 1e-15);
        }
    }

    /** Canonical crops byte-identical to Python's (tie-proof rounding on both sides). */
    @Test
    public void canonicalCropsAreIdentical() throws IOException {
        int n = 0, values = 0;
        for (Object c : list("crops")) {
            Image img = image((int) Json.num(c, "image"));
            Preprocess.Crop p = Preprocess.Crop.fromJson(Json.obj(c, "crop"));
            Image crop = Preprocess.canonicalCrop(img, box(c), p);
            byte[] want = bytes(c, "expected").array();
            assertEquals(p.cropSize, crop.width);
            for (int k = 0; k < want.length; k++)
                assertEquals("crop " + n + " byte " + k + " (" + p.policy + ", margin " + p.margin + ")",
                             want[k] & 0xff, crop.rgb[k] & 0xff);
            values += want.length;
            n++;
        }
        System.out.println("canonical crops: " + n + " crops, all " + values + " values identical");
        assertTrue(n >= 100);
    }

    @Test
    public void modelInputsWithin1e6() throws IOException {
        double maxDiff = 0;
        for (Object in : list("inputs")) {
            Object c = list("crops").get((int) Json.num(in, "crop"));
            int s = (int) Json.num(Json.obj(c, "crop"), "crop_size");
            Image crop = new Image(s, s, bytes(c, "expected").array());
            float[] x = Preprocess.modelInput(crop, Preprocess.Normalize.fromJson(Json.obj(in, "normalize")));
            float[] want = f32(in, "expected");
            assertEquals(want.length, x.length);
            for (int k = 0; k < x.length; k++) maxDiff = Math.max(maxDiff, Math.abs(x[k] - want[k]));
        }
        System.out.println("model input: max |java - python| = " + maxDiff + " over " + list("inputs").size() + " tensors");
        assertTrue("max abs diff " + maxDiff, maxDiff <= 1e-6);
    }

    @Test
    public void nhwcIsTheTransposeOfNchw() throws IOException {
        Object c = list("crops").get(0);
        int s = (int) Json.num(Json.obj(c, "crop"), "crop_size");
        Image crop = new Image(s, s, bytes(c, "expected").array());
        double[] m = {0.5, 0.4, 0.3}, sd = {0.2, 0.25, 0.3};
        float[] nchw = Preprocess.modelInput(crop, new Preprocess.Normalize(40, m, sd, "RGB", "NCHW"));
        float[] nhwc = Preprocess.modelInput(crop, new Preprocess.Normalize(40, m, sd, "RGB", "NHWC"));
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 40 * 40; p++) assertEquals(nchw[ch * 1600 + p], nhwc[p * 3 + ch], 0f);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void readoutAgesAndArgmaxMatch() throws IOException {
        for (Object r : list("readouts")) {
            Readout ro = new Readout((Map<String, Object>) Json.get(r, "spec"));
            int n = (int) Json.num(r, "n"), k = (int) Json.num(r, "k");
            float[] all = f32(r, "outputs");
            double[] ages = Json.nums(r, "ages"), argmax = Json.nums(r, "argmax");
            for (int i = 0; i < n; i++) {
                float[] out = new float[k];
                System.arraycopy(all, i * k, out, 0, k);
                double age = ro.age(out);
                String what = ro.type + " sample " + i;
                assertEquals(what, ages[i], age, 1e-4);          // float32 (Python) vs float64 (Java)
                assertEquals(what, (long) argmax[i], ro.argmax(out));
                if (Math.abs(ages[i] - Math.floor(ages[i]) - 0.5) > 1e-4)  // not on a rounding edge
                    assertEquals(what + " displayed age", Math.rint(ages[i]), Math.rint(age), 0);
            }
        }
    }

    @Test
    public void blazeFaceDecodingAndChoiceMatch() throws IOException {
        Object det = g.get("detector");
        int found = 0;
        for (Object im : list("images")) {
            int w = (int) Json.num(im, "w"), h = (int) Json.num(im, "h");
            List<BlazeFace.Face> faces = BlazeFace.decode(f32(im, "reg"), f32(im, "cls"),
                    new BlazeFace.Letterbox(w, h), Json.num(det, "min_score"), Json.num(det, "iou"));
            List<?> want = (List<?>) Json.get(im, "faces");
            assertEquals(Json.str(im, "name"), want.size(), faces.size());
            for (int i = 0; i < faces.size(); i++) {
                assertArrayEquals(Json.nums(want.get(i), "box"), faces.get(i).box, 0.01);
                assertArrayEquals(Json.nums(want.get(i), "keypoints"), faces.get(i).keypoints, 0.01);
                assertEquals(Json.num(want.get(i), "score"), faces.get(i).score, 1e-5);
            }
            BlazeFace.Face chosen = BlazeFace.choose(faces, w, h);
            assertEquals((int) Json.num(im, "chosen"), chosen == null ? -1 : faces.indexOf(chosen));
            found += faces.size();
        }
        assertTrue("faces found in the golden images: " + found, found >= list("images").size() / 2);
    }

    @Test
    public void checkStatisticsMatchNumpy() {
        Object st = g.get("stats");
        double[] pred = Json.nums(st, "pred"), truth = Json.nums(st, "true"), lat = Json.nums(st, "latency");
        assertEquals(Json.num(st, "mae"), Stats.mae(pred, truth), 1e-12);
        assertEquals(Json.num(st, "cs5"), Stats.cs(pred, truth, 5.0), 0);
        Map<String, Object> pct = Json.obj(st, "percentiles");
        for (String q : pct.keySet())
            assertEquals("p" + q, Json.num(pct, q), Stats.percentile(lat, Double.parseDouble(q)), 1e-12);
    }
}
