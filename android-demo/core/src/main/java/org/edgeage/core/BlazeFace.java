package org.edgeage.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/**
 * BlazeFace short-range decoding as in edgeage/face.py: letterbox to 128x128 in [-1, 1], SSD
 * anchors (strides 8 and 16), boxes + 6 key points, MediaPipe's weighted (blending) NMS, and the
 * choice of one face (largest, discounted by distance from the image centre). The network itself
 * runs through {@link Model} (LiteRT on Android).
 *
 * <p>One difference from Python: the letterbox resize is the canonical triangle filter of
 * {@link Preprocess#resize} where face.py uses OpenCV's INTER_AREA (boxes agree to about a pixel).
 */
public final class BlazeFace {
    public static final int INPUT = 128, ANCHORS = 896, REG = 16;
    private static final float[] ANCHOR_XY = anchors();

    /** Runs the .tflite: input [1,128,128,3] float, outputs regressors [1,896,16], classificators [1,896,1]. */
    public interface Model {
        void run(float[] input, float[] regressors, float[] classificators) throws Exception;
    }

    public static final class Face {
        public final double[] box;        // x0, y0, x1, y1 in source pixels
        public final double score;
        public final double[] keypoints;  // 6 x (x, y): right eye, left eye, nose, mouth, right ear, left ear

        Face(double[] box, double score, double[] keypoints) {
            this.box = box;
            this.score = score;
            this.keypoints = keypoints;
        }

        public double area() {
            return Math.max(0, box[2] - box[0]) * Math.max(0, box[3] - box[1]);
        }
    }

    /** Where the image lies in the 128x128 input. */
    public static final class Letterbox {
        public final double scale;
        public final int nw, nh, ox, oy;

        public Letterbox(int w, int h) {
            scale = (double) INPUT / Math.max(w, h);
            nh = Math.max(1, (int) Math.rint(h * scale));  // Python round(): half to even
            nw = Math.max(1, (int) Math.rint(w * scale));
            oy = (INPUT - nh) / 2;
            ox = (INPUT - nw) / 2;
        }

        double px(double unitX) { return (unitX * INPUT - ox) / scale; }

        double py(double unitY) { return (unitY * INPUT - oy) / scale; }
    }

    /** [896 x (x, y)] anchor centres in unit coordinates. */
    static float[] anchors() {
        float[] out = new float[ANCHORS * 2];
        int k = 0;
        int[][] layers = {{8, 2}, {16, 6}};
        for (int[] l : layers) {
            int g = INPUT / l[0];
            for (int y = 0; y < g; y++)
                for (int x = 0; x < g; x++)
                    for (int r = 0; r < l[1]; r++) {
                        out[k++] = (float) ((x + 0.5) / g);
                        out[k++] = (float) ((y + 0.5) / g);
                    }
        }
        return out;
    }

    /** The network input: the image letterboxed into 128x128x3, x / 127.5 - 1, padding -1. */
    public static float[] input(Image img, Letterbox lb) {
        float[] in = new float[INPUT * INPUT * 3];
        Arrays.fill(in, -1f);
        Image small = Preprocess.toUint8(Preprocess.resize(img, lb.nh, lb.nw), lb.nw, lb.nh);
        for (int y = 0; y < lb.nh; y++)
            for (int x = 0; x < lb.nw; x++)
                for (int c = 0; c < 3; c++)
                    in[((lb.oy + y) * INPUT + lb.ox + x) * 3 + c] = (float) (small.at(x, y, c) / 127.5 - 1.0);
        return in;
    }

    public static List<Face> detect(Model model, Image img, double minScore, double iou) throws Exception {
        Letterbox lb = new Letterbox(img.width, img.height);
        float[] reg = new float[ANCHORS * REG], cls = new float[ANCHORS];
        model.run(input(img, lb), reg, cls);
        return decode(reg, cls, lb, minScore, iou);
    }

    /** Raw outputs -> faces in source pixels, best cluster first. */
    public static List<Face> decode(float[] reg, float[] cls, Letterbox lb, double minScore, double iou) {
        List<Integer> keep = new ArrayList<Integer>();
        final double[] score = new double[ANCHORS];
        double[][] boxes = new double[ANCHORS][], kps = new double[ANCHORS][];
        for (int a = 0; a < ANCHORS; a++) {
            score[a] = 1.0 / (1.0 + Math.exp(-Math.max(-80.0, Math.min(80.0, cls[a]))));
            if (score[a] < minScore) continue;
            keep.add(a);
            int r = a * REG;
            double ax = ANCHOR_XY[2 * a], ay = ANCHOR_XY[2 * a + 1];
            double cx = reg[r] / (double) INPUT + ax, cy = reg[r + 1] / (double) INPUT + ay;
            double bw = reg[r + 2] / (double) INPUT, bh = reg[r + 3] / (double) INPUT;
            boxes[a] = new double[] {cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2};
            kps[a] = new double[12];
            for (int k = 0; k < 6; k++) {
                kps[a][2 * k] = reg[r + 4 + 2 * k] / (double) INPUT + ax;
                kps[a][2 * k + 1] = reg[r + 5 + 2 * k] / (double) INPUT + ay;
            }
        }
        // weighted NMS: take the best remaining box, blend every box overlapping it by more than iou
        Collections.sort(keep, new Comparator<Integer>() {
            @Override
            public int compare(Integer p, Integer q) { return Double.compare(score[q], score[p]); }
        });
        List<Face> faces = new ArrayList<Face>();
        while (!keep.isEmpty()) {
            double[] top = boxes[keep.get(0)];
            double[] b = new double[4], k = new double[12];
            double wsum = 0;
            List<Integer> rest = new ArrayList<Integer>();
            for (int a : keep) {
                if (a != keep.get(0) && iou(top, boxes[a]) <= iou) { rest.add(a); continue; }
                wsum += score[a];
                for (int j = 0; j < 4; j++) b[j] += boxes[a][j] * score[a];
                for (int j = 0; j < 12; j++) k[j] += kps[a][j] * score[a];
            }
            for (int j = 0; j < 4; j++) b[j] /= wsum;
            for (int j = 0; j < 12; j++) k[j] = (j % 2 == 0 ? lb.px(k[j] / wsum) : lb.py(k[j] / wsum));
            faces.add(new Face(new double[] {lb.px(b[0]), lb.py(b[1]), lb.px(b[2]), lb.py(b[3])},
                    score[keep.get(0)], k));
            keep = rest;
        }
        return faces;
    }

    static double iou(double[] a, double[] b) {
        double w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
        double h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
        double inter = w * h;
        double union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
        return inter / Math.max(union, 1e-9);
    }

    /** The largest face, discounted by its distance from the image centre; null if none. */
    public static Face choose(List<Face> faces, int imgW, int imgH) {
        Face best = null;
        double bestRank = Double.NEGATIVE_INFINITY, diag = Math.hypot(imgW, imgH);
        for (Face f : faces) {
            double cx = (f.box[0] + f.box[2]) / 2, cy = (f.box[1] + f.box[3]) / 2;
            double rank = f.area() * (1.0 - Math.hypot(cx - imgW / 2.0, cy - imgH / 2.0) / diag);
            if (rank > bestRank) {
                bestRank = rank;
                best = f;
            }
        }
        return best;
    }
}
