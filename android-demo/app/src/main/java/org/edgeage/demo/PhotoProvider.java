package org.edgeage.demo;

import android.content.ContentProvider;
import android.content.ContentValues;
import android.database.Cursor;
import android.net.Uri;
import android.os.ParcelFileDescriptor;

import java.io.File;
import java.io.FileNotFoundException;

/** content://org.edgeage.demo.photos/camera.jpg: the file the camera app writes into. */
public final class PhotoProvider extends ContentProvider {
    static final Uri CAMERA = Uri.parse("content://org.edgeage.demo.photos/camera.jpg");

    static File cameraFile(android.content.Context ctx) {
        return new File(ctx.getCacheDir(), "camera.jpg");
    }

    @Override
    public ParcelFileDescriptor openFile(Uri uri, String mode) throws FileNotFoundException {
        if (!CAMERA.equals(uri)) throw new FileNotFoundException(uri.toString());
        return ParcelFileDescriptor.open(cameraFile(getContext()), ParcelFileDescriptor.parseMode(mode));
    }

    @Override
    public boolean onCreate() { return true; }

    @Override
    public String getType(Uri uri) { return "image/jpeg"; }

    @Override
    public Cursor query(Uri u, String[] p, String s, String[] a, String o) { return null; }

    @Override
    public Uri insert(Uri u, ContentValues v) { return null; }

    @Override
    public int delete(Uri u, String s, String[] a) { return 0; }

    @Override
    public int update(Uri u, ContentValues v, String s, String[] a) { return 0; }
}
