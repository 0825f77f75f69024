// A C ABI over dlib's HOG face detector, 68-point shape predictor and face
// recognition ResNet (dnn_face_recognition_ex.cpp's network). Every entry
// point catches C++ exceptions and reports them through `err`.
#include <dlib/dnn.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

#include <cstdint>
#include <cstring>
#include <string>

using namespace dlib;

namespace {

template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual = add_prev1<block<N, BN, 1, tag1<SUBNET>>>;

template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual_down = add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<block<N, BN, 2, tag1<SUBNET>>>>>>;

template <int N, template <typename> class BN, int stride, typename SUBNET>
using block = BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, stride, stride, SUBNET>>>>>;

template <int N, typename SUBNET> using ares = relu<residual<block, N, affine, SUBNET>>;
template <int N, typename SUBNET> using ares_down = relu<residual_down<block, N, affine, SUBNET>>;

template <typename SUBNET> using alevel0 = ares_down<256, SUBNET>;
template <typename SUBNET> using alevel1 = ares<256, ares<256, ares_down<256, SUBNET>>>;
template <typename SUBNET> using alevel2 = ares<128, ares<128, ares_down<128, SUBNET>>>;
template <typename SUBNET> using alevel3 = ares<64, ares<64, ares<64, ares_down<64, SUBNET>>>>;
template <typename SUBNET> using alevel4 = ares<32, ares<32, ares<32, SUBNET>>>;

using anet_type = loss_metric<fc_no_bias<128, avg_pool_everything<
    alevel0<alevel1<alevel2<alevel3<alevel4<
    max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

void set_err(char *err, size_t len, const std::string &msg) {
    if (len == 0) return;
    std::strncpy(err, msg.c_str(), len - 1);
    err[len - 1] = 0;
}

}  // namespace

struct wf_model {
    frontal_face_detector detector = get_frontal_face_detector();
    shape_predictor landmarks;
    anet_type net;
};

extern "C" {

wf_model *wf_open(const char *landmarks_path, const char *net_path, char *err, size_t err_len) {
    try {
        auto *m = new wf_model();
        try {
            deserialize(landmarks_path) >> m->landmarks;
            deserialize(net_path) >> m->net;
        } catch (...) {
            delete m;
            throw;
        }
        return m;
    } catch (const std::exception &e) {
        set_err(err, err_len, e.what());
    } catch (...) {
        set_err(err, err_len, "unknown error loading the face models");
    }
    return nullptr;
}

void wf_close(wf_model *m) { delete m; }

// Finds up to `max` faces in an RGB image (`w`×`h`, rows packed), largest
// first. For each: 128 descriptor floats, 68 (x, y) landmark pairs, and the
// box (left, top, right, bottom). Small images are upsampled once so faces
// down to ~40 px are found. Returns the number of faces, or -1 (see `err`).
int wf_faces(wf_model *m, const uint8_t *rgb, long w, long h, int max, float *descriptors,
             float *marks, long *boxes, char *err, size_t err_len) {
    try {
        matrix<rgb_pixel> img(h, w);
        for (long r = 0; r < h; ++r)
            for (long c = 0; c < w; ++c) {
                const uint8_t *p = rgb + 3 * (r * w + c);
                img(r, c) = rgb_pixel(p[0], p[1], p[2]);
            }
        double scale = 1.0;
        std::vector<rectangle> found = m->detector(img);
        if (found.empty() && w * h < 640L * 480L) {
            pyramid_up(img);
            scale = 2.0;
            found = m->detector(img);
        }
        std::sort(found.begin(), found.end(),
                  [](const rectangle &a, const rectangle &b) { return a.area() > b.area(); });
        if ((int)found.size() > max) found.resize(max);
        std::vector<matrix<rgb_pixel>> chips;
        for (size_t i = 0; i < found.size(); ++i) {
            full_object_detection shape = m->landmarks(img, found[i]);
            matrix<rgb_pixel> chip;
            extract_image_chip(img, get_face_chip_details(shape, 150, 0.25), chip);
            chips.push_back(std::move(chip));
            for (unsigned long k = 0; k < 68 && k < shape.num_parts(); ++k) {
                marks[i * 136 + 2 * k] = shape.part(k).x() / scale;
                marks[i * 136 + 2 * k + 1] = shape.part(k).y() / scale;
            }
            boxes[i * 4] = found[i].left() / scale;
            boxes[i * 4 + 1] = found[i].top() / scale;
            boxes[i * 4 + 2] = found[i].right() / scale;
            boxes[i * 4 + 3] = found[i].bottom() / scale;
        }
        if (!chips.empty()) {
            std::vector<matrix<float, 0, 1>> d = m->net(chips);
            for (size_t i = 0; i < d.size(); ++i)
                for (long k = 0; k < 128; ++k) descriptors[i * 128 + k] = d[i](k);
        }
        return (int)found.size();
    } catch (const std::exception &e) {
        set_err(err, err_len, e.what());
    } catch (...) {
        set_err(err, err_len, "unknown error in face analysis");
    }
    return -1;
}

}  // extern "C"
