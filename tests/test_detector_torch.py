"""The face detector as a PyTorch module (edgeage.models.blazeface), built from the shipped
.tflite: its weights are the graph's, its raw outputs match LiteRT's on real faces and on larger
synthetic scenes, any batch size works, and edgeage.face's decode + NMS give the same faces."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from conftest import UTK

from edgeage.data import load_image
from edgeage.face import FaceDetector, _iou, letterbox
from edgeage.models.blazeface import blazeface, torch_face_detector, torch_runner

RAW_TOL = 1e-3  # max abs diff of regressors (input pixels) and score logits; measured ~1.5e-4


@pytest.fixture(scope="module")
def nets():
    torch.set_num_threads(1)
    return blazeface(), FaceDetector()


def utk_images(n: int = 8) -> list[np.ndarray]:
    files = sorted(os.listdir(UTK)) if UTK.is_dir() else []
    if len(files) < n:
        pytest.fail(f"UTKFace images missing under {UTK} (the tests need ../shared/datasets/utkface)")
    return [load_image(UTK / f) for f in files[:: len(files) // n][:n]]


def scenes() -> list[np.ndarray]:
    """Faces pasted into 640x480 (and one 480x640) frames at several sizes and places, two faces in
    one frame, and a frame with no face: a smooth random background, seeded."""
    rng = np.random.default_rng(0)
    faces = utk_images(4)

    def frame(h, w):
        small = rng.integers(40, 215, (h // 40, w // 40, 3)).astype(np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    out = []
    for k, (size, x, y) in enumerate([(360, 140, 60), (240, 30, 200), (160, 420, 40), (100, 270, 190)]):
        f = frame(480, 640)
        f[y:y + size, x:x + size] = cv2.resize(faces[k], (size, size), interpolation=cv2.INTER_AREA)
        out.append(f)
    two = frame(480, 640)
    two[100:340, 40:280] = cv2.resize(faces[1], (240, 240), interpolation=cv2.INTER_AREA)
    two[150:350, 380:580] = cv2.resize(faces[2], (200, 200), interpolation=cv2.INTER_AREA)
    portrait = frame(640, 480)
    portrait[250:530, 100:380] = cv2.resize(faces[3], (280, 280), interpolation=cv2.INTER_AREA)
    return out + [two, portrait, frame(480, 640)]


def test_weights_are_the_tflite_constants(nets):
    """The module's weights equal the .tflite's float16 constants as LiteRT reads them (an
    independent reader of the same file), in PyTorch's layouts; the graph's ops all became layers."""
    from edgeage.face import model_path
    from edgeage.litert import interpreter

    net, _ = nets
    it = interpreter(model_path(), 1)
    consts = {d["name"]: d["index"] for d in it.get_tensor_details()}
    assert net.op_counts == {"DEQUANTIZE": 74, "CONV_2D": 21, "DEPTHWISE_CONV_2D": 16, "RELU": 17, "ADD": 16,
                             "PAD": 11, "MAX_POOL_2D": 3, "RESHAPE": 4, "CONCATENATION": 2}
    assert len(net.layers) == 21 + 16 and not any(p.requires_grad for p in net.parameters())
    for key, conv in net.layers.items():
        w = it.get_tensor(consts[f"{key}/Kernel"]).astype(np.float32)
        b = it.get_tensor(consts[f"{key}/Bias"]).astype(np.float32)
        want = w.transpose(3, 0, 1, 2) if key.startswith("depthwise") else w.transpose(0, 3, 1, 2)
        assert conv.weight.dtype == torch.float32 and np.array_equal(conv.weight.numpy(), want), key
        assert np.array_equal(conv.bias.numpy(), b), key
        assert conv.groups == (conv.in_channels if key.startswith("depthwise") else 1), key
    # the stride-2 stem (5x5) and depthwise convs pad asymmetrically, as TFLite's SAME does
    pads = {s[3][0]: s[3][1] for s in net.steps if s[0] == "conv"}
    assert pads["conv2d"] == (1, 2, 1, 2) and pads["depthwise_conv2d_2"] == (0, 1, 0, 1)
    assert pads["depthwise_conv2d"] is None and net.layers["depthwise_conv2d"].padding == (1, 1)


def test_raw_outputs_match_litert_in_one_batch(nets):
    """Real faces and letterboxed scenes, all frames in one call of the module: regressors and
    score logits within RAW_TOL of LiteRT's (one frame per invoke)."""
    net, det = nets
    imgs = utk_images() + scenes()
    x = np.stack([letterbox(img)[0] for img in imgs])
    reg_l, cls_l = det.runner(x)
    with torch.inference_mode():
        reg_t, cls_t = (t.numpy() for t in net(torch.from_numpy(x)))
    assert reg_t.shape == (len(imgs), 896, 16) and cls_t.shape == (len(imgs), 896, 1)
    assert reg_t.dtype == cls_t.dtype == np.float32
    d_reg, d_cls = np.abs(reg_t - reg_l).max(), np.abs(cls_t - cls_l).max()
    assert d_reg < RAW_TOL and d_cls < RAW_TOL, (d_reg, d_cls)
    assert np.abs(reg_l).max() > 20 and cls_l.max() > 1  # not vacuous: faces scored, boxes regressed
    # a frame's outputs do not depend on the others in the batch
    with torch.inference_mode():
        one = net(torch.from_numpy(x[3:4]))
    assert np.abs(one[0].numpy()[0] - reg_t[3]).max() < 1e-4 and np.abs(one[1].numpy()[0] - cls_t[3]).max() < 1e-4
    # the NCHW-input variant computes the same
    with torch.inference_mode():
        nchw = blazeface(nchw_input=True)(torch.from_numpy(x[:2]).permute(0, 3, 1, 2).contiguous())
    assert np.abs(nchw[0].numpy() - reg_t[:2]).max() < 1e-4 and np.abs(nchw[1].numpy() - cls_t[:2]).max() < 1e-4


def test_decoded_faces_match_litert(nets):
    """The same decode + NMS on the module's outputs: same number of faces per image, box IoU >
    0.99, key points within half a pixel, scores within 1e-4; detect_many (one batched call) gives
    what detect gives frame by frame."""
    net, det = nets
    tdet = torch_face_detector(net=net)
    imgs = utk_images() + scenes()
    got = tdet.detect_many(imgs)
    found, worst = 0, 1.0
    for img, faces_t in zip(imgs, got):
        faces_l = det.detect(img)
        assert len(faces_t) == len(faces_l), (len(faces_t), len(faces_l))
        for fl in faces_l:
            ious = _iou(np.array(fl.box), np.array([ft.box for ft in faces_t]))
            ft = faces_t[int(np.argmax(ious))]
            worst = min(worst, float(ious.max()))
            assert ious.max() > 0.99 and abs(ft.score - fl.score) < 1e-4
            assert np.abs(np.array(ft.keypoints) - np.array(fl.keypoints)).max() < 0.5
        found += len(faces_l)
    n_utk = len(utk_images())
    assert all(len(f) >= 1 for f in got[:n_utk])  # every UTKFace chip has its face
    assert len(got[n_utk + 4]) == 2 and got[-1] == []  # the two-face scene, the empty frame
    assert found >= n_utk + 6, found
    assert [f.box for f in tdet.detect(imgs[n_utk])] == [f.box for f in got[n_utk]]


def test_runner_takes_nhwc_whatever_the_module_layout(nets):
    net, det = nets
    x = np.stack([letterbox(img)[0] for img in utk_images(2)])
    a, b = torch_runner(net)(x), torch_runner(blazeface(nchw_input=True))(x)
    assert np.abs(a[0] - b[0]).max() < 1e-4 and np.abs(a[1] - b[1]).max() < 1e-4


def test_exports_with_a_dynamic_batch(nets):
    """torch.export (what the ONNX, ExecuTorch and LiteRT exporters start from) takes the module
    with a dynamic batch; the exported program computes what the module does."""
    net, _ = nets
    x = torch.from_numpy(np.stack([letterbox(img)[0] for img in utk_images(3)]))
    ep = torch.export.export(net, (x[:2],), dynamic_shapes=({0: torch.export.Dim("n", min=1, max=64)},))
    with torch.inference_mode():
        want, got = net(x), ep.module()(x)
    assert all(torch.equal(w, g) for w, g in zip(want, got))
