package org.edgeage.core;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The app's bundle (written by {@code edgeage android bundle}): an exported artifact's model
 * file and manifest.json, the face detector, and labelled check images:
 * <pre>
 *   manifest.json                       the artifact manifest (artifact.target/precision/files)
 *   model file(s)                       as listed in manifest artifact.files (name, sha256, size)
 *   face_detection_short_range.tflite   BlazeFace for photo mode
 *   check/labels.csv                    file,age (canonical crops, PNG, crop_size x crop_size)
 * </pre>
 * {@link #open} verifies the model file's sha256 and size against the manifest.
 */
public final class Bundle {
    public static final String DETECTOR = "face_detection_short_range.tflite";
    public final File dir, model;
    public final Map<String, Object> manifest, artifact;
    public final String target, precision, sha256, backend;
    public final Preprocess.Crop crop;
    public final Preprocess.Normalize normalize;
    public final Readout readout;

    private Bundle(File dir, Map<String, Object> manifest) throws IOException {
        this.dir = dir;
        this.manifest = manifest;
        artifact = Json.obj(manifest, "artifact");
        target = Json.str(artifact, "target");
        precision = artifact.containsKey("precision") ? String.valueOf(artifact.get("precision")) : "?";
        Map<String, Object> pre = Json.obj(manifest, "preprocess");
        crop = Preprocess.Crop.fromJson(Json.obj(pre, "crop"));
        normalize = Preprocess.Normalize.fromJson(Json.obj(pre, "normalize"));
        readout = new Readout(Json.obj(manifest, "readout"));
        String[] entry = modelEntry(Json.get(artifact, "files"), backendOfTarget(target));
        model = new File(dir, entry[0]);
        backend = backendOf(entry[0]);
        sha256 = verify(model, entry[1], entry[2]);
    }

    public static Bundle open(File dir) throws IOException {
        File mf = new File(dir, "manifest.json");
        if (!mf.isFile()) throw new IOException(mf + " not found: not an edgeage bundle (make one with `edgeage android bundle`)");
        try {
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) Json.parse(mf);
            return new Bundle(dir, m);
        } catch (IllegalArgumentException | ClassCastException e) {
            throw new IOException(mf + ": not an artifact manifest (" + e.getMessage() + "); re-export the model");
        }
    }

    /** "executorch" (.pte), "litert" (.tflite) or "onnx" (.onnx), by the model file's suffix. */
    public static String backendOf(String file) {
        if (file.endsWith(".pte")) return "executorch";
        if (file.endsWith(".tflite")) return "litert";
        if (file.endsWith(".onnx")) return "onnx";
        return null;
    }

    /** The runtime that artifact.target names (executorch, tflite/litert, onnx*), else null. */
    static String backendOfTarget(String target) {
        String t = target.toLowerCase(java.util.Locale.ROOT);
        if (t.contains("executorch")) return "executorch";
        if (t.contains("tflite") || t.contains("litert")) return "litert";
        if (t.contains("onnx")) return "onnx";
        return null;
    }

    /** {name, sha256, size or null} of the model file for backend {@code want} (null: any known);
     *  artifact.files is a list of {name, sha256, size} or a map name -> {sha256, size} / name -> sha256. */
    private static String[] modelEntry(Object files, String want) {
        List<String[]> entries = new ArrayList<String[]>();
        if (files instanceof List) {
            for (Object f : (List<?>) files)
                entries.add(new String[] {Json.str(f, "name"), Json.str(f, "sha256"), size(f)});
        } else if (files instanceof Map) {
            for (Map.Entry<?, ?> e : ((Map<?, ?>) files).entrySet()) {
                Object v = e.getValue();
                entries.add(new String[] {String.valueOf(e.getKey()),
                        v instanceof Map ? Json.str(v, "sha256") : String.valueOf(v), v instanceof Map ? size(v) : null});
            }
        }
        for (String[] e : entries) {
            String b = backendOf(e[0]);
            if (b != null && (want == null || b.equals(want))) return e;
        }
        throw new IllegalArgumentException("artifact.files lists no " + (want == null ? ".pte, .tflite or .onnx" : want)
                + " model file");
    }

    private static String size(Object f) {
        Object s = ((Map<?, ?>) f).get("size");
        return s instanceof Number ? String.valueOf(((Number) s).longValue()) : null;
    }

    private static String verify(File f, String sha256, String size) throws IOException {
        if (!f.isFile()) throw new IOException(f + ": model file listed in manifest.json is missing");
        if (size != null && f.length() != Long.parseLong(size))
            throw new IOException(f + ": size " + f.length() + " differs from manifest.json (" + size + "); the bundle is corrupted");
        String actual = Io.sha256(f);
        if (!actual.equalsIgnoreCase(sha256))
            throw new IOException(f + ": sha256 " + actual + " differs from manifest.json (" + sha256 + "); the bundle is corrupted or modified");
        return actual;
    }

    public static final class Sample {
        public final String file;
        public final double age;

        Sample(String file, double age) {
            this.file = file;
            this.age = age;
        }
    }

    /** check/labels.csv: header "file,age", one labelled canonical crop per line. */
    public List<Sample> checkSamples() throws IOException {
        File f = new File(dir, "check/labels.csv");
        if (!f.isFile()) throw new IOException(f + " not found: the bundle has no check images (bundle with --check-data)");
        List<Sample> out = new ArrayList<Sample>();
        BufferedReader r = new BufferedReader(new InputStreamReader(new FileInputStream(f), "UTF-8"));
        try {
            String header = r.readLine();
            if (header == null || !header.trim().equals("file,age")) throw new IOException(f + ": header must be 'file,age'");
            int line = 1;
            for (String s; (s = r.readLine()) != null; ) {
                line++;
                if (s.trim().isEmpty()) continue;
                int comma = s.lastIndexOf(',');
                try {
                    out.add(new Sample(s.substring(0, comma), Double.parseDouble(s.substring(comma + 1))));
                } catch (RuntimeException e) {
                    throw new IOException(f + ":" + line + ": expected 'file,age', got '" + s + "'");
                }
            }
        } finally {
            r.close();
        }
        return out;
    }

    public File checkImage(Sample s) {
        return new File(dir, "check/" + s.file);
    }
}
