package org.edgeage.demo;

import android.app.Activity;
import android.content.ActivityNotFoundException;
import android.content.ClipData;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Color;
import android.graphics.Paint;
import android.net.Uri;
import android.os.Bundle;
import android.provider.MediaStore;
import android.util.Log;
import android.view.View;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.LinearLayout;
import android.widget.TextView;

import java.io.File;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.edgeage.core.Io;
import org.edgeage.core.Json;

/**
 * Photo mode: pick a photo or take one, detect faces, show each age on the picture.
 * Check mode: {@code adb shell am start -S -n org.edgeage.demo/.MainActivity --es mode check
 * [--ei count N] [--ei warmup W] [--ei threads T]} runs the bundle's labelled check images and
 * writes check-result.json (or check-error.txt) to the app's external files dir.
 */
public final class MainActivity extends Activity {
    static final String TAG = "edgeage";
    static final int PICK = 1, CAMERA = 2;
    private TextView status;
    private ImageView view;
    private Engine engine;

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        LinearLayout root = new LinearLayout(this);
        root.setOrientation(LinearLayout.VERTICAL);
        LinearLayout buttons = new LinearLayout(this);
        buttons.addView(button("Gallery", new Runnable() {
            @Override
            public void run() {
                startForResult(new Intent(Intent.ACTION_GET_CONTENT).setType("image/*"), PICK);
            }
        }));
        buttons.addView(button("Camera", new Runnable() {
            @Override
            public void run() {
                Intent i = new Intent(MediaStore.ACTION_IMAGE_CAPTURE).putExtra(MediaStore.EXTRA_OUTPUT, PhotoProvider.CAMERA);
                i.setClipData(ClipData.newRawUri("photo", PhotoProvider.CAMERA));
                i.addFlags(Intent.FLAG_GRANT_WRITE_URI_PERMISSION | Intent.FLAG_GRANT_READ_URI_PERMISSION);
                startForResult(i, CAMERA);
            }
        }));
        root.addView(buttons);
        status = new TextView(this);
        status.setPadding(16, 8, 16, 8);
        root.addView(status);
        view = new ImageView(this);
        view.setAdjustViewBounds(true);
        root.addView(view, new LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f));
        setContentView(root);
        handle(getIntent());
    }

    @Override
    protected void onNewIntent(Intent intent) {
        super.onNewIntent(intent);
        handle(intent);
    }

    private void handle(final Intent intent) {
        if ("check".equals(intent.getStringExtra("mode"))) {
            background("check mode", new Task() {
                @Override
                public void run() throws Exception { check(intent); }
            });
        } else {
            show("Pick a photo or take one.");
        }
    }

    private Button button(String label, final Runnable action) {
        Button b = new Button(this);
        b.setText(label);
        b.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) { action.run(); }
        });
        return b;
    }

    private void startForResult(Intent i, int code) {
        try {
            startActivityForResult(i, code);
        } catch (ActivityNotFoundException e) {
            show("No app on this device handles " + i.getAction());
        }
    }

    @Override
    protected void onActivityResult(int code, int result, final Intent data) {
        if (result != RESULT_OK) return;
        final Uri uri = code == PICK && data != null ? data.getData() : code == CAMERA ? PhotoProvider.CAMERA : null;
        if (uri == null) return;
        background("photo", new Task() {
            @Override
            public void run() throws Exception { photo(uri); }
        });
    }

    private interface Task {
        void run() throws Exception;
    }

    /** Runs off the UI thread; any failure is shown and logged (and written, in check mode). */
    private void background(final String what, final Task task) {
        show(what + ": working ...");
        new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    task.run();
                } catch (Throwable t) {
                    StringWriter sw = new StringWriter();
                    t.printStackTrace(new PrintWriter(sw));
                    Log.e(TAG, what + " failed", t);
                    if (what.equals("check mode")) {
                        try {
                            Engine.write(new File(getExternalFilesDir(null), "check-error.txt"), sw.toString().getBytes("UTF-8"));
                        } catch (Exception ignored) {
                            // nothing more to do: logged above
                        }
                    }
                    show(what + " failed: " + t);
                }
            }
        }, what).start();
    }

    private void show(final String text) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() { status.setText(text); }
        });
    }

    private synchronized Engine engine(int threads) throws Exception {
        if (engine == null) engine = new Engine(this, threads);
        return engine;
    }

    private void check(Intent intent) throws Exception {
        File dir = getExternalFilesDir(null);
        File out = new File(dir, intent.hasExtra("out") ? intent.getStringExtra("out") : "check-result.json");
        out.delete();
        new File(dir, "check-error.txt").delete();
        Engine e = engine(intent.getIntExtra("threads", 4));
        Map<String, Object> res = e.check(intent.getIntExtra("count", 0), intent.getIntExtra("warmup", 3),
                new org.edgeage.core.CheckRun.Progress() {
                    @Override
                    public void done(int i, int n) {
                        if (i % 10 == 0 || i == n) show("check mode: " + i + "/" + n);
                    }
                });
        Json.writeFile(out, res);
        Map<String, Object> s = Json.obj(res, "summary");
        String msg = String.format(Locale.ROOT, "check: n=%d MAE %.3f CS(5) %.3f latency p50 %.2f ms -> %s",
                (int) Json.num(s, "n"), Json.num(s, "mae"), Json.num(s, "cs5"),
                Json.num(Json.obj(s, "latency_ms"), "p50"), out);
        Log.i(TAG, msg);
        show(msg);
    }

    private void photo(Uri uri) throws Exception {
        File f = new File(getCacheDir(), "photo");
        if (!uri.equals(PhotoProvider.CAMERA)) {
            InputStream in = getContentResolver().openInputStream(uri);
            try {
                Engine.write(f, Io.readAll(in));
            } finally {
                in.close();
            }
        } else {
            f = PhotoProvider.cameraFile(this);
        }
        Engine e = engine(4);
        Bitmap bmp = Engine.decodeFile(f, 2048);
        List<Engine.Estimate> est = e.estimate(Engine.toImage(bmp));
        final Bitmap drawn = draw(bmp, est);
        StringBuilder msg = new StringBuilder();
        for (Engine.Estimate x : est)
            msg.append(String.format(Locale.ROOT, "%s: age %.1f\n", x.box == null ? "centre square" : "face", x.age));
        if (e.detectorProblem != null) msg.append(e.detectorProblem);
        show(msg.toString().trim());
        runOnUiThread(new Runnable() {
            @Override
            public void run() { view.setImageBitmap(drawn); }
        });
    }

    private static Bitmap draw(Bitmap src, List<Engine.Estimate> est) {
        Bitmap b = src.copy(Bitmap.Config.ARGB_8888, true);
        Canvas c = new Canvas(b);
        float unit = Math.max(2f, Math.max(b.getWidth(), b.getHeight()) / 300f);
        Paint box = new Paint();
        box.setStyle(Paint.Style.STROKE);
        box.setStrokeWidth(unit);
        box.setColor(Color.rgb(255, 64, 64));
        Paint fill = new Paint();
        fill.setColor(Color.rgb(255, 64, 64));
        Paint text = new Paint(Paint.ANTI_ALIAS_FLAG);
        text.setColor(Color.WHITE);
        text.setTextSize(12 * unit);
        for (Engine.Estimate e : est) {
            float[] r = e.box == null ? new float[] {0, 12 * unit + 8, 0, 0}
                    : new float[] {(float) e.box[0], (float) e.box[1], (float) e.box[2], (float) e.box[3]};
            if (e.box != null) c.drawRect(r[0], r[1], r[2], r[3], box);
            String label = String.format(Locale.ROOT, "%.0f", e.age);
            c.drawRect(r[0], r[1] - 12 * unit - 8, r[0] + text.measureText(label) + 8, r[1], fill);
            c.drawText(label, r[0] + 4, r[1] - 6, text);
        }
        return b;
    }
}
