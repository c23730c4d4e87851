package org.edgeage.core;

/** An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B (numpy HxWx3 uint8). */
public final class Image {
    public final int width, height;
    public final byte[] rgb;

    public Image(int width, int height, byte[] rgb) {
        if (rgb.length != width * height * 3)
            throw new IllegalArgumentException("rgb holds " + rgb.length + " bytes, not " + width + "x" + height + "x3");
        this.width = width;
        this.height = height;
        this.rgb = rgb;
    }

    /** From packed 0xAARRGGBB pixels (Android Bitmap.getPixels, BufferedImage.getRGB). */
    public static Image fromArgb(int width, int height, int[] argb) {
        byte[] rgb = new byte[width * height * 3];
        for (int k = 0; k < argb.length; k++) {
            rgb[3 * k] = (byte) (argb[k] >> 16);
            rgb[3 * k + 1] = (byte) (argb[k] >> 8);
            rgb[3 * k + 2] = (byte) argb[k];
        }
        return new Image(width, height, rgb);
    }

    public int at(int x, int y, int c) {
        return rgb[(y * width + x) * 3 + c] & 0xff;
    }
}
