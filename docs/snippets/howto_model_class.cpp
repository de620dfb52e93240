// A model as a class: it owns its state (weights, scratch buffers, counters) and is called in place.
#include <diffuse/ddpm.hpp>

#include <cstdio>
#include <span>
#include <vector>

// A network with a learned variance outputs 2C channels per batch item, item after item: the C
// prediction channels of item 0, its C variance channels, then item 1, ... Here the "variance"
// channels hold v = 0 for learned_range (halfway, in log space, between β̃ and β').
class my_network {
 public:
  my_network(const diffuse::noise_schedule& schedule, std::size_t batch) : schedule_(&schedule), batch_(batch) {}

  // Non-const is fine: the samplers call the model through a non-const reference.
  void operator()(std::span<const double> x_t, int t, std::span<double> out) {
    ++calls_;
    const std::size_t per_item = x_t.size() / batch_;  // C·H·W
    const double a = schedule_->sqrt_alpha_bar(t), b = schedule_->sqrt_one_minus_alpha_bar(t);
    for (std::size_t i = 0; i < batch_; ++i) {
      const double* x = x_t.data() + i * per_item;
      double* prediction = out.data() + 2 * i * per_item;  // item i's first C channels
      double* variance = prediction + per_item;             // item i's next C channels
      for (std::size_t j = 0; j < per_item; ++j) {
        prediction[j] = b * x[j] / (a * a + b * b);  // ε̂ for data x0 ~ N(0, 1)
        variance[j] = 0.0;
      }
    }
  }
  int calls() const { return calls_; }

 private:
  const diffuse::noise_schedule* schedule_;
  std::size_t batch_;
  int calls_ = 0;
};

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddpm_sampler sampler(schedule, diffuse::respace(1000, "ddim25"),
                                      {.prediction = diffuse::prediction_type::epsilon,
                                       .variance = diffuse::variance_type::learned_range});
  const diffuse::sample_shape shape{.batch = 4, .channels = 1, .spatial = 16};
  my_network net(schedule, shape.batch);
  std::vector<double> x(shape.numel());  // double samples: the model takes spans of double
  diffuse::fill_initial_noise<double>(x, shape, /*seed=*/5);
  // Pass the object itself (by reference): its counter is updated. A temporary would work too.
  diffuse::sample(sampler, net, std::span<double>(x), shape, {.seed = 5});
  std::printf("%d steps, %d network calls, output factor %zu\n", sampler.num_steps(), net.calls(), sampler.output_factor());
  return net.calls() == sampler.num_steps() ? 0 : 1;
}
