package org.edgeage.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Minimal JSON: objects -> LinkedHashMap, arrays -> ArrayList, numbers -> Double, plus the
 *  NaN / Infinity tokens Python's json module writes. Writing also takes float[] / double[]. */
public final class Json {
    private final String s;
    private int i;

    private Json(String s) { this.s = s; }

    public static Object parse(String text) {
        Json p = new Json(text);
        Object v = p.value();
        p.ws();
        if (p.i != p.s.length()) throw p.error("trailing characters");
        return v;
    }

    public static Object parse(File f) throws IOException {
        try {
            return parse(new String(Io.readAll(f), "UTF-8"));
        } catch (IllegalArgumentException e) {
            throw new IOException(f + ": invalid JSON (" + e.getMessage() + ")");
        }
    }

    private IllegalArgumentException error(String what) {
        return new IllegalArgumentException(what + " at offset " + i);
    }

    private void ws() {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
    }

    private boolean take(String tok) {
        if (!s.startsWith(tok, i)) return false;
        i += tok.length();
        return true;
    }

    private Object value() {
        ws();
        if (i >= s.length()) throw error("unexpected end");
        char c = s.charAt(i);
        if (c == '{') return object();
        if (c == '[') return array();
        if (c == '"') return string();
        if (take("true")) return Boolean.TRUE;
        if (take("false")) return Boolean.FALSE;
        if (take("null")) return null;
        if (take("NaN")) return Double.NaN;
        if (take("Infinity")) return Double.POSITIVE_INFINITY;
        if (take("-Infinity")) return Double.NEGATIVE_INFINITY;
        int start = i;
        while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
        if (start == i) throw error("unexpected character '" + c + "'");
        return Double.valueOf(s.substring(start, i));
    }

    private Map<String, Object> object() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        i++;
        ws();
        if (take("}")) return m;
        do {
            ws();
            String k = string();
            ws();
            if (!take(":")) throw error("expected ':'");
            m.put(k, value());
            ws();
        } while (take(","));
        if (!take("}")) throw error("expected '}'");
        return m;
    }

    private List<Object> array() {
        List<Object> a = new ArrayList<Object>();
        i++;
        ws();
        if (take("]")) return a;
        do {
            a.add(value());
            ws();
        } while (take(","));
        if (!take("]")) throw error("expected ']'");
        return a;
    }

    private String string() {
        if (!take("\"")) throw error("expected string");
        StringBuilder b = new StringBuilder();
        while (true) {
            if (i >= s.length()) throw error("unterminated string");
            char c = s.charAt(i++);
            if (c == '"') return b.toString();
            if (c != '\\') { b.append(c); continue; }
            char e = s.charAt(i++);
            switch (e) {
                case 'n': b.append('\n'); break;
                case 't': b.append('\t'); break;
                case 'r': b.append('\r'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'u': b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                default: b.append(e);
            }
        }
    }

    // ---- access helpers: a missing or mistyped field names the key -------------------------

    @SuppressWarnings("unchecked")
    public static Map<String, Object> obj(Object m, String key) {
        Object v = get(m, key);
        if (!(v instanceof Map)) throw new IllegalArgumentException("'" + key + "' is not an object");
        return (Map<String, Object>) v;
    }

    public static double num(Object m, String key) {
        Object v = get(m, key);
        if (!(v instanceof Number)) throw new IllegalArgumentException("'" + key + "' is not a number");
        return ((Number) v).doubleValue();
    }

    public static String str(Object m, String key) {
        Object v = get(m, key);
        if (!(v instanceof String)) throw new IllegalArgumentException("'" + key + "' is not a string");
        return (String) v;
    }

    public static double[] nums(Object m, String key) {
        Object v = get(m, key);
        if (!(v instanceof List)) throw new IllegalArgumentException("'" + key + "' is not an array");
        List<?> l = (List<?>) v;
        double[] out = new double[l.size()];
        for (int k = 0; k < out.length; k++) out[k] = ((Number) l.get(k)).doubleValue();
        return out;
    }

    public static Object get(Object m, String key) {
        if (!(m instanceof Map) || !((Map<?, ?>) m).containsKey(key))
            throw new IllegalArgumentException("missing '" + key + "'");
        return ((Map<?, ?>) m).get(key);
    }

    // ---- writing ------------------------------------------------------------------------------

    public static String write(Object v) {
        StringBuilder b = new StringBuilder();
        write(b, v, 0);
        return b.append('\n').toString();
    }

    /** Written to a temporary file beside {@code f}, then renamed (readers never see half a file). */
    public static void writeFile(File f, Object v) throws IOException {
        File tmp = new File(f.getPath() + ".tmp");
        Writer w = new OutputStreamWriter(new FileOutputStream(tmp), "UTF-8");
        try {
            w.write(write(v));
        } finally {
            w.close();
        }
        if (!tmp.renameTo(f)) throw new IOException("cannot rename " + tmp + " to " + f);
    }

    private static void indent(StringBuilder b, int depth) {
        b.append('\n');
        for (int k = 0; k < depth; k++) b.append("  ");
    }

    private static void write(StringBuilder b, Object v, int depth) {
        if (v == null) {
            b.append("null");
        } else if (v instanceof String) {
            quote(b, (String) v);
        } else if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            b.append(Double.isNaN(d) ? "NaN" : Double.isInfinite(d) ? (d > 0 ? "Infinity" : "-Infinity")
                    : Double.toString(d));
        } else if (v instanceof Number || v instanceof Boolean) {
            b.append(v);
        } else if (v instanceof Map) {
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                b.append(first ? "" : ",");
                first = false;
                indent(b, depth + 1);
                quote(b, String.valueOf(e.getKey()));
                b.append(": ");
                write(b, e.getValue(), depth + 1);
            }
            if (!first) indent(b, depth);
            b.append('}');
        } else if (v instanceof List) {
            // arrays of scalars stay on one line, arrays of objects get one line each
            b.append('[');
            List<?> l = (List<?>) v;
            boolean nested = !l.isEmpty() && (l.get(0) instanceof Map || l.get(0) instanceof List);
            for (int k = 0; k < l.size(); k++) {
                b.append(k == 0 ? "" : nested ? "," : ", ");
                if (nested) indent(b, depth + 1);
                write(b, l.get(k), depth + 1);
            }
            if (nested) indent(b, depth);
            b.append(']');
        } else if (v instanceof float[]) {
            float[] a = (float[]) v;
            List<Object> l = new ArrayList<Object>(a.length);
            for (float x : a) l.add(Double.valueOf(Float.toString(x)));  // shortest float repr
            write(b, l, depth);
        } else if (v instanceof double[]) {
            List<Object> l = new ArrayList<Object>();
            for (double x : (double[]) v) l.add(x);
            write(b, l, depth);
        } else {
            throw new IllegalArgumentException("not JSON serialisable: " + v.getClass().getName());
        }
    }

    private static void quote(StringBuilder b, String s) {
        b.append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c == '\n') b.append("\\n");
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        b.append('"');
    }
}
