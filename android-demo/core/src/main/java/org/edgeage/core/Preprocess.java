package org.edgeage.core;

import java.util.Map;

/**
 * The canonical preprocessing of edgeage/preprocess.py, formula for formula (checked against
 * golden vectors written by the Python side):
 * canonical crop (square around the face box, edge replication, antialiased triangle resize to
 * crop_size, uint8), then the model input (resize to input_size in float64, /255, channel order,
 * (x - mean) / std, rounded once to float32).
 *
 * <p>uint8 rounding is half-up plus 2^-20, as in Python's to_uint8: exact halves (x.5) come out of
 * the float64 resize a hair above or below .5 depending on summation order, and the offset makes
 * both sides round them alike, so crops are byte-identical. The model input from a given crop
 * matches to float32 rounding.
 */
public final class Preprocess {
    private Preprocess() {}

    /** manifest preprocess.crop */
    public static final class Crop {
        public final double margin, shiftY;
        public final int cropSize;
        public final String policy;

        public Crop(double margin, double shiftY, int cropSize, String policy) {
            this.margin = margin;
            this.shiftY = shiftY;
            this.cropSize = cropSize;
            this.policy = policy;
        }

        public static Crop fromJson(Map<String, Object> m) {
            return new Crop(Json.num(m, "margin"), Json.num(m, "shift_y"), (int) Json.num(m, "crop_size"),
                    Json.str(m, "policy"));
        }
    }

    /** manifest preprocess.normalize */
    public static final class Normalize {
        public final int inputSize;
        public final double[] mean, std;
        public final boolean bgr, nhwc;

        public Normalize(int inputSize, double[] mean, double[] std, String channelOrder, String layout) {
            if (!channelOrder.equals("RGB") && !channelOrder.equals("BGR"))
                throw new IllegalArgumentException("channel_order " + channelOrder + ": expected RGB or BGR");
            if (!layout.equals("NCHW") && !layout.equals("NHWC"))
                throw new IllegalArgumentException("layout " + layout + ": expected NCHW or NHWC");
            if (mean.length != 3 || std.length != 3)
                throw new IllegalArgumentException("mean and std need 3 values each");
            this.inputSize = inputSize;
            this.mean = mean;
            this.std = std;
            this.bgr = channelOrder.equals("BGR");
            this.nhwc = layout.equals("NHWC");
        }

        public static Normalize fromJson(Map<String, Object> m) {
            return new Normalize((int) Json.num(m, "input_size"), Json.nums(m, "mean"), Json.nums(m, "std"),
                    Json.str(m, "channel_order"), Json.str(m, "layout"));
        }

        public int[] shape() {
            return nhwc ? new int[] {1, inputSize, inputSize, 3} : new int[] {1, 3, inputSize, inputSize};
        }
    }

    /** [nOut][nIn] antialiased triangle filter (resize_weights): rows sum to 1, bit for bit as
     *  numpy computes them (its row sum is pairwise). */
    public static double[][] resizeWeights(int nIn, int nOut) {
        double scale = (double) nIn / nOut;
        double support = Math.max(scale, 1.0);
        double[][] w = new double[nOut][nIn];
        for (int o = 0; o < nOut; o++) {
            double center = (o + 0.5) * scale;
            for (int i = 0; i < nIn; i++) w[o][i] = Math.max(0.0, 1.0 - Math.abs((i + 0.5) - center) / support);
            double sum = pairwiseSum(w[o], 0, nIn);
            if (sum == 0) sum = 1.0;
            for (int i = 0; i < nIn; i++) w[o][i] /= sum;
        }
        return w;
    }

    /** numpy's pairwise summation (8 accumulators, blocks of at most 128 elements). */
    static double pairwiseSum(double[] a, int off, int n) {
        if (n < 8) {
            double r = 0;
            for (int i = 0; i < n; i++) r += a[off + i];
            return r;
        }
        if (n > 128) {
            int n2 = n / 2;
            n2 -= n2 % 8;
            return pairwiseSum(a, off, n2) + pairwiseSum(a, off + n2, n - n2);
        }
        double[] r = new double[8];
        System.arraycopy(a, off, r, 0, 8);
        int i = 8;
        for (; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[off + i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[off + i];
        return res;
    }

    /** HxWx3 image -> outH x outW x 3 float64 (resize): height axis, then width axis. */
    public static double[] resize(Image img, int outH, int outW) {
        int w = img.width, h = img.height;
        double[][] wy = resizeWeights(h, outH), wx = resizeWeights(w, outW);
        double[] tmp = new double[outH * w * 3];
        for (int o = 0; o < outH; o++)
            for (int y = 0; y < h; y++) {
                double f = wy[o][y];
                if (f == 0) continue;
                int src = y * w * 3, dst = o * w * 3;
                for (int k = 0; k < w * 3; k++) tmp[dst + k] += f * (img.rgb[src + k] & 0xff);
            }
        double[] out = new double[outH * outW * 3];
        for (int o = 0; o < outH; o++)
            for (int p = 0; p < outW; p++)
                for (int x = 0; x < w; x++) {
                    double f = wx[p][x];
                    if (f == 0) continue;
                    int src = (o * w + x) * 3, dst = (o * outW + p) * 3;
                    for (int c = 0; c < 3; c++) out[dst + c] += f * tmp[src + c];
                }
        return out;
    }

    /** clip(floor(x + 0.5 + 2^-20), 0, 255), as edgeage.preprocess.to_uint8 */
    public static Image toUint8(double[] v, int w, int h) {
        byte[] out = new byte[v.length];
        for (int k = 0; k < v.length; k++) out[k] = (byte) Math.min(255.0, Math.max(0.0, Math.floor(v[k] + (0.5 + 0x1p-20))));
        return new Image(w, h, out);
    }

    /** {x0, y0, side}: the square for a face box {x0, y0, x1, y1} in pixels, or the centre square
     *  when box is null (square_bounds). */
    public static int[] squareBounds(double[] box, int imgW, int imgH, Crop p) {
        if (box == null) {
            int side = Math.min(imgW, imgH);
            return new int[] {(imgW - side) / 2, (imgH - side) / 2, side};
        }
        double side = p.margin * Math.max(box[2] - box[0], box[3] - box[1]);
        double cx = (box[0] + box[2]) / 2.0;
        double cy = (box[1] + box[3]) / 2.0 + p.shiftY * side;
        int iside = Math.max(1, (int) Math.floor(side + 0.5));
        return new int[] {(int) Math.floor(cx - side / 2 + 0.5), (int) Math.floor(cy - side / 2 + 0.5), iside};
    }

    /** side x side window at (x0, y0); outside pixels replicate the nearest edge pixel. */
    public static Image extractSquare(Image img, int x0, int y0, int side) {
        byte[] out = new byte[side * side * 3];
        for (int y = 0; y < side; y++) {
            int sy = Math.min(Math.max(y0 + y, 0), img.height - 1);
            for (int x = 0; x < side; x++) {
                int sx = Math.min(Math.max(x0 + x, 0), img.width - 1);
                System.arraycopy(img.rgb, (sy * img.width + sx) * 3, out, (y * side + x) * 3, 3);
            }
        }
        return new Image(side, side, out);
    }

    /** HxWx3 RGB -> crop_size x crop_size canonical crop; box null = centre square. */
    public static Image canonicalCrop(Image img, double[] box, Crop p) {
        int s = p.cropSize;
        if (p.policy.equals("none")) return toUint8(resize(img, s, s), s, s);
        int[] b = squareBounds(box, img.width, img.height, p);
        return toUint8(resize(extractSquare(img, b[0], b[1], b[2]), s, s), s, s);
    }

    /** Canonical crop -> model input float32 [1,3,S,S] (NCHW) or [1,S,S,3] (NHWC), flattened. */
    public static float[] modelInput(Image crop, Normalize n) {
        int s = n.inputSize;
        double[] r = resize(crop, s, s);
        float[] out = new float[3 * s * s];
        for (int y = 0; y < s; y++)
            for (int x = 0; x < s; x++)
                for (int c = 0; c < 3; c++) {
                    double v = r[(y * s + x) * 3 + (n.bgr ? 2 - c : c)] / 255.0;
                    float f = (float) ((v - n.mean[c]) / n.std[c]);
                    out[n.nhwc ? (y * s + x) * 3 + c : (c * s + y) * s + x] = f;
                }
        return out;
    }
}
