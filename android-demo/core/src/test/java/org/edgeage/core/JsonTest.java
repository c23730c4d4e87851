package org.edgeage.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.List;
import java.util.Map;

import org.junit.Test;

public class JsonTest {
    @Test
    public void roundTripWithPythonTokens() {
        String text = "{\"a\": [1, 2.5, -3e-2, Infinity, NaN], \"s\": \"x\\\"y\\u00e9\\n\", \"t\": true, \"n\": null, \"o\": {}}";
        Object v = Json.parse(text);
        Object again = Json.parse(Json.write(v));
        List<?> a = (List<?>) ((Map<?, ?>) again).get("a");
        assertEquals(-0.03, (Double) a.get(2), 0);
        assertTrue(Double.isInfinite((Double) a.get(3)) && Double.isNaN((Double) a.get(4)));
        assertEquals("x\"y\u00e9\n", ((Map<?, ?>) again).get("s"));
        assertEquals(Json.write(v), Json.write(again));
    }

    @Test
    public void floatArraysKeepTheirShortestForm() {
        assertEquals("[0.1, -2.5]\n", Json.write(new float[] {0.1f, -2.5f}));
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsTrailingGarbage() {
        Json.parse("{} x");
    }
}
