package org.edgeage.demo;

import android.content.Context;
import android.content.res.AssetManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.graphics.Matrix;
import android.media.ExifInterface;
import android.os.Build;

import java.io.Closeable;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.edgeage.core.BlazeFace;
import org.edgeage.core.Bundle;
import org.edgeage.core.CheckRun;
import org.edgeage.core.Image;
import org.edgeage.core.ModelRunner;
import org.edgeage.core.Preprocess;

/** The bundle, its model runner and the face detector; ages for photos and the check run. */
final class Engine implements Closeable {
    static final String ASSETS = "edgeage";
    final Bundle bundle;
    final ModelRunner runner;
    final BlazeFace.Model detector;      // null when LiteRT is not in this APK
    final String detectorProblem;

    static final class Estimate {
        final double[] box;   // null: centre square (no face found / no detector)
        final double age;

        Estimate(double[] box, double age) {
            this.box = box;
            this.age = age;
        }
    }

    Engine(Context ctx, int threads) throws Exception {
        bundle = Bundle.open(locate(ctx));  // verifies the model file's sha256 against the manifest
        runner = Runners.model(bundle.backend, bundle.model, threads);
        BlazeFace.Model det = null;
        String problem = null;
        File tflite = new File(bundle.dir, Bundle.DETECTOR);
        try {
            if (!tflite.isFile()) throw new IOException(tflite + " missing from the bundle");
            det = Runners.detector(tflite, threads);
        } catch (Exception e) {
            problem = "face detection unavailable (" + e.getMessage() + "): using the centre square";
        }
        detector = det;
        detectorProblem = problem;
    }

    /** The pushed bundle (external files dir/bundle, from `edgeage device-check`) if there is one,
     *  else the one in the APK's assets, copied to internal storage once per install. */
    static File locate(Context ctx) throws IOException {
        File pushed = new File(ctx.getExternalFilesDir(null), "bundle");
        if (new File(pushed, "manifest.json").isFile()) return pushed;
        File dir = new File(ctx.getFilesDir(), "bundle");
        File stamp = new File(dir, ".installed");
        String version;
        try {
            version = String.valueOf(ctx.getPackageManager().getPackageInfo(ctx.getPackageName(), 0).lastUpdateTime);
        } catch (Exception e) {
            version = "?";
        }
        if (!stamp.isFile() || !version.equals(new String(org.edgeage.core.Io.readAll(stamp), "UTF-8"))) {
            AssetManager am = ctx.getAssets();
            if (am.list(ASSETS).length == 0)
                throw new IOException("no bundle: this APK has none and nothing was pushed to " + pushed
                        + " (edgeage android bundle / edgeage device-check)");
            copyAssets(am, ASSETS, dir);
            write(stamp, version.getBytes("UTF-8"));
        }
        return dir;
    }

    private static void copyAssets(AssetManager am, String path, File dst) throws IOException {
        String[] names = am.list(path);
        if (names.length == 0) {  // a file
            InputStream in = am.open(path);
            try {
                write(dst, org.edgeage.core.Io.readAll(in));
            } finally {
                in.close();
            }
            return;
        }
        for (String n : names) copyAssets(am, path + "/" + n, new File(dst, n));
    }

    static void write(File f, byte[] data) throws IOException {
        f.getParentFile().mkdirs();
        OutputStream out = new FileOutputStream(f);
        try {
            out.write(data);
        } finally {
            out.close();
        }
    }

    /** Every face (or the centre square) with its age. */
    List<Estimate> estimate(Image img) throws Exception {
        List<double[]> boxes = new ArrayList<double[]>();
        if (detector != null && bundle.crop.policy.equals("detect"))
            for (BlazeFace.Face f : BlazeFace.detect(detector, img, 0.5, 0.3)) boxes.add(f.box);
        if (boxes.isEmpty()) boxes.add(null);
        List<Estimate> out = new ArrayList<Estimate>();
        for (double[] box : boxes) {
            Image crop = Preprocess.canonicalCrop(img, box, bundle.crop);
            float[] y = runner.run(Preprocess.modelInput(crop, bundle.normalize), bundle.normalize.shape());
            out.add(new Estimate(box, bundle.readout.age(y)));
        }
        return out;
    }

    Map<String, Object> check(int count, int warmup, CheckRun.Progress progress) throws Exception {
        return CheckRun.run(bundle, runner, new CheckRun.Decoder() {
            @Override
            public Image decode(File f) throws IOException {
                return toImage(decodeFile(f, Integer.MAX_VALUE));
            }
        }, deviceInfo(), count, warmup, true, progress);
    }

    static Map<String, Object> deviceInfo() {
        Map<String, Object> d = new LinkedHashMap<String, Object>();
        d.put("manufacturer", Build.MANUFACTURER);
        d.put("model", Build.MODEL);
        d.put("device", Build.DEVICE);
        d.put("hardware", Build.HARDWARE);
        d.put("sdk_int", Build.VERSION.SDK_INT);
        d.put("release", Build.VERSION.RELEASE);
        d.put("abis", new ArrayList<Object>(Arrays.asList((Object[]) Build.SUPPORTED_ABIS)));
        d.put("cpus", Runtime.getRuntime().availableProcessors());
        return d;
    }

    /** Decoded without scaling, premultiplication or colour conversion (check PNGs stay exact);
     *  photos larger than maxSide are subsampled, EXIF orientation applied. */
    static Bitmap decodeFile(File f, int maxSide) throws IOException {
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inJustDecodeBounds = true;
        BitmapFactory.decodeFile(f.getPath(), o);
        if (o.outWidth <= 0) throw new IOException(f + ": not a readable image");
        int sample = 1;
        while (Math.max(o.outWidth, o.outHeight) / sample > maxSide) sample *= 2;
        o = new BitmapFactory.Options();
        o.inSampleSize = sample;
        o.inPreferredConfig = Bitmap.Config.ARGB_8888;
        o.inPremultiplied = false;
        o.inScaled = false;
        Bitmap bmp = BitmapFactory.decodeFile(f.getPath(), o);
        if (bmp == null) throw new IOException(f + ": cannot decode");
        int rot = new ExifInterface(f.getPath()).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL);
        Matrix m = new Matrix();
        if (rot == ExifInterface.ORIENTATION_ROTATE_90) m.postRotate(90);
        else if (rot == ExifInterface.ORIENTATION_ROTATE_180) m.postRotate(180);
        else if (rot == ExifInterface.ORIENTATION_ROTATE_270) m.postRotate(270);
        else if (rot == ExifInterface.ORIENTATION_FLIP_HORIZONTAL) m.postScale(-1, 1);
        else if (rot == ExifInterface.ORIENTATION_FLIP_VERTICAL) m.postScale(1, -1);
        return m.isIdentity() ? bmp : Bitmap.createBitmap(bmp, 0, 0, bmp.getWidth(), bmp.getHeight(), m, true);
    }

    static Image toImage(Bitmap b) {
        int[] px = new int[b.getWidth() * b.getHeight()];
        b.getPixels(px, 0, b.getWidth(), 0, 0, b.getWidth(), b.getHeight());
        return Image.fromArgb(b.getWidth(), b.getHeight(), px);
    }

    @Override
    public void close() throws IOException {
        runner.close();
    }
}
