// Digit generation shared by the generate and mpi_generate examples: load the shipped model, run DDPM,
// DDIM or one of the solvers (DPM-Solver++, UniPC, Euler, Euler ancestral, Heun) with classifier-free guidance over a range of global sample indices, write a PNG grid and raw
// samples. Sample i (global index) has class digits[i mod len] and draws the noise stream of index i, so
// any batch size, thread count, shard or MPI rank split gives the same bits for the same seed.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#include <unistd.h>

#include "diffuse/ddpm.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/nn/unet.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/flow_euler.hpp"
#include "diffuse/samplers/flow_heun.hpp"
#include "diffuse/samplers/flow_sigmas.hpp"
#include "diffuse/samplers/from_config.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/unipc.hpp"
#include "support/png.hpp"

namespace examples {

/// Samples made by generate_digits.
struct generated {
  std::vector<float> samples;
  std::vector<int> labels;
  int channels = 0, height = 0, width = 0;
  long first = 0;
  int steps = 0;
  double seconds = 0;
  std::string sampler;  ///< the sampler that ran (the model's default when --sampler was not given)
};

/// What --sampler accepts.
inline constexpr const char* sampler_names =
    "ddim, ddpm, dpm++2m, dpm++3m, sde-dpm++2m, unipc, euler, euler-a or heun; for a flow-matching model flow-euler, "
    "flow-heun, or dpm++2m, dpm++3m and unipc on flow sigmas (default: ddim, or flow-euler for a FlowMatchEulerDiscreteScheduler "
    "model)";

/// Every command-line setting of generate and mpi_generate.
struct settings {
  std::string model_dir;
  std::vector<int> digits{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  int count = 40;
  std::string sampler;  ///< empty: ddim, or flow-euler for a flow-matching model
  int steps = -1;  ///< -1: 50 for DDIM, every training step for DDPM, 10 for flow-euler
  double eta = 0.0;
  bool clipped_eps = true;  ///< DDIM: re-derive ε̂ from the clipped x̂0 (see add_generation_options)
  std::string spacing = "trailing";
  double guidance = 2.0;
  int null_class = -1;
  std::uint64_t seed = 0;
  int batch = 20;
  int threads = 0;
  std::string shard = "0/1";
  std::string output = "digits.png";
  std::string raw;
  bool quiet = false;
};

/// The shipped model: next to the sources, or ./models/digits.
inline std::string default_model_dir() {
#ifdef DIFFUSE_MODELS_DIR
  if (std::filesystem::exists(std::filesystem::path(DIFFUSE_MODELS_DIR) / "digits" / "config.json"))
    return (std::filesystem::path(DIFFUSE_MODELS_DIR) / "digits").string();
#endif
  return "models/digits";
}

/// A value the user gave that cannot be used: the programs exit with status 2 (see exit_status).
struct usage_exception : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

[[noreturn]] inline void usage_error(const std::string& what) { throw usage_exception(what); }

/// Exit statuses of generate and mpi_generate, also listed by --help.
enum exit_status : int { success = 0, failure = 1, usage = 2 };

/// The --help footer that states the exit statuses.
inline constexpr const char* exit_status_help =
    "Exit status: 0 written; 1 a failure while loading, sampling or writing (the message says which); "
    "2 an invalid command line or option value (one line on stderr, nothing written).";

/// Parses the command line. Help prints and returns 0; a parse error prints one line on stderr and returns
/// exit_status::usage; success returns -1 (carry on).
inline int parse_command_line(CLI::App& app, int argc, char** argv, const char* program, bool print = true) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return print ? app.exit(e) : 0;  // --help
    if (print) std::cerr << program << ": " << e.what() << " (see --help)\n";
    return exit_status::usage;
  }
}

/// CLI11 validators for values that must be written as plain numbers, so that "" or "-1" is never
/// converted to 0 or to 2^64 - 1.
inline const CLI::Validator unsigned_integer_text(
    [](std::string& v) -> std::string {
      if (v.empty() || v.size() > 20 || v.find_first_not_of("0123456789") != std::string::npos)
        return "\"" + v + "\" is not a non-negative integer; expected digits only";
      return {};
    },
    "UINT");

/// A finite number >= 0 (CLI::NonNegativeNumber lets NaN through).
inline const CLI::Validator finite_non_negative(
    [](std::string& v) -> std::string {
      try {
        std::size_t used = 0;
        const double x = std::stod(v, &used);
        if (used == v.size() && std::isfinite(x) && x >= 0) return {};
      } catch (const std::exception&) {
      }
      return "\"" + v + "\" is not a finite number >= 0";
    },
    "NUMBER >= 0");

/// The "shift" of a flow model's FlowMatchEulerDiscreteScheduler config (read after load_solver validated it).
inline double flow_shift(const std::filesystem::path& dir) {
  std::ifstream in(dir / "scheduler_config.json");
  const auto j = nlohmann::json::parse(in);
  return j.contains("shift") && j["shift"].is_number() ? j["shift"].get<double>() : 1.0;
}

/// --model: a folder, or the name of a shipped model (digits, fashion) found as the default one is.
inline std::filesystem::path resolve_model_dir(const std::string& model) {
  if (model.empty()) return default_model_dir();
  if (model.find('/') == std::string::npos && !std::filesystem::exists(model)) {
#ifdef DIFFUSE_MODELS_DIR
    if (std::filesystem::exists(std::filesystem::path(DIFFUSE_MODELS_DIR) / model / "config.json"))
      return std::filesystem::path(DIFFUSE_MODELS_DIR) / model;
#endif
    if (std::filesystem::exists(std::filesystem::path("models") / model / "config.json")) return std::filesystem::path("models") / model;
  }
  return model;
}

inline std::pair<int, int> parse_shard(const std::string& s) {
  const auto slash = s.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument("");
    std::size_t a = 0, b = 0;
    const int k = std::stoi(s.substr(0, slash), &a), n = std::stoi(s.substr(slash + 1), &b);
    if (a != slash || b != s.size() - slash - 1 || n < 1 || k < 0 || k >= n) throw std::invalid_argument("");
    return {k, n};
  } catch (const std::logic_error&) {
    usage_error("--shard " + s + " is invalid; expected K/N with 0 <= K < N");
  }
}

/// A progress bar on stderr when it is a terminal.
class progress {
 public:
  progress(long total, bool enabled) : total_(total), enabled_(enabled && isatty(STDERR_FILENO)) {}
  void update(long done) {
    if (!enabled_) return;
    const int width = 40, filled = static_cast<int>(width * done / std::max(total_, 1L));
    std::fprintf(stderr, "\r[%.*s%*s] %3ld%%", filled, "########################################", width - filled, "",
                 100 * done / std::max(total_, 1L));
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  long total_;
  bool enabled_;
};

/// Samples of global indices [first, last): labels digits[i mod len], noise stream i.
inline generated generate_digits(const settings& s, long first, long last) {
  using clock = std::chrono::steady_clock;
#if defined(_OPENMP)
  if (s.threads > 0) omp_set_num_threads(s.threads);
#endif
  const std::filesystem::path dir = resolve_model_dir(s.model_dir);
  auto net = diffuse::nn::unet2d<float>::load(dir);
  const auto sc = diffuse::scheduler_config::load(dir / "scheduler_config.json");
  // A flow-matching model (FlowMatchEulerDiscreteScheduler) predicts a velocity: the flow samplers, and the
  // multistep solvers on flow sigmas, can use it; the VP-space samplers cannot.
  const bool flow = sc.prediction == diffuse::prediction_type::flow_prediction;
  const std::string sampler_name = !s.sampler.empty() ? s.sampler : flow ? "flow-euler" : "ddim";
  const bool flow_sampler = sampler_name == "flow-euler" || sampler_name == "flow-heun";
  const bool on_flow_sigmas = sampler_name == "dpm++2m" || sampler_name == "dpm++3m" || sampler_name == "unipc";
  if (flow && !flow_sampler && !on_flow_sigmas)
    usage_error("--sampler " + sampler_name + ": the model in " + dir.string() + " is a flow-matching model (" + sc.class_name +
                "); expected --sampler flow-euler, flow-heun, or dpm++2m, dpm++3m or unipc on flow sigmas");
  if (!flow && flow_sampler)
    usage_error("--sampler " + sampler_name + " needs a flow-matching model (FlowMatchEulerDiscreteScheduler); the model in " + dir.string() +
                " has " + (sc.class_name.empty() ? std::string("no _class_name") : sc.class_name));
  const auto& cfg = net.config();
  if (!net.class_conditional()) usage_error("the model in " + dir.string() + " is not class-conditional; expected the digits model");
  const int classes = *cfg.num_class_embeds;
  const int null_class = s.null_class >= 0 ? s.null_class : classes - 1;
  if (null_class >= classes) usage_error("--null-class " + std::to_string(null_class) + " is out of range; expected < " + std::to_string(classes));
  if (s.digits.empty()) usage_error("--digits is empty; expected at least one class");
  for (int d : s.digits)
    if (d < 0 || d >= classes || d == null_class)
      usage_error("class " + std::to_string(d) + " is unknown; expected 0 to " + std::to_string(classes - 1) + " except the null class " +
                  std::to_string(null_class));
  if (s.count < 1) usage_error("--count must be >= 1");
  if (!s.raw.empty() && std::filesystem::absolute(s.raw).lexically_normal() == std::filesystem::absolute(s.output).lexically_normal())
    usage_error("--raw " + s.raw + " is the same file as --output; expected two different paths");
  // Refuse an unwritable destination before spending minutes on sampling.
  for (const std::string& out : {s.output, s.raw}) {
    if (out.empty()) continue;
    const auto parent = std::filesystem::absolute(out).parent_path();
    if (!std::filesystem::is_directory(parent) || access(parent.c_str(), W_OK) != 0)
      usage_error("cannot write " + out + ": " + parent.string() + " is not a writable directory");
  }
  if (s.batch < 1) usage_error("--batch must be >= 1");
  if (!(s.guidance >= 0)) usage_error("--guidance must be >= 0");

  if (s.eta != 0.0 && sampler_name != "ddim")
    usage_error("--eta " + std::to_string(s.eta) + " applies to DDIM only; the " + sampler_name + " sampler has no eta (expected --sampler ddim, or no --eta)");
  const int T = sc.num_train_timesteps();
  if (s.steps == 0 || s.steps < -1) usage_error("--steps " + std::to_string(s.steps) + " is invalid; expected 1 to " + std::to_string(T));
  const int steps = s.steps > 0 ? s.steps : (sampler_name == "ddpm" ? T : flow ? 10 : 50);
  if (steps > T) usage_error("--steps " + std::to_string(steps) + " is more than the " + std::to_string(T) + " training steps");
  diffuse::timestep_spacing spacing;
  if (s.spacing == "trailing") spacing = diffuse::timestep_spacing::trailing;
  else if (s.spacing == "leading") spacing = diffuse::timestep_spacing::leading;
  else if (s.spacing == "linspace") spacing = diffuse::timestep_spacing::linspace;
  else usage_error("--spacing " + s.spacing + " is unknown; expected trailing, leading or linspace");
  const auto timesteps = diffuse::make_timesteps(T, steps, spacing);

  const int h = cfg.sample_height, w = cfg.sample_width, C = cfg.in_channels;
  const std::size_t per = static_cast<std::size_t>(C) * h * w;
  std::vector<float> samples;
  std::vector<int> labels;
  try {
    samples.resize(static_cast<std::size_t>(last - first) * per);
    labels.resize(static_cast<std::size_t>(last - first));
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("out of memory for " + std::to_string(last - first) + " samples of " + std::to_string(C) + "x" +
                             std::to_string(h) + "x" + std::to_string(w) + " floats (" +
                             std::to_string(static_cast<double>(last - first) * static_cast<double>(per) * 4e-9) +
                             " GB); expected fewer samples per run (a smaller --count, or --shard)");
  }
  for (long i = first; i < last; ++i) labels[static_cast<std::size_t>(i - first)] = s.digits[static_cast<std::size_t>(i) % s.digits.size()];

  diffuse::sampling_workspace<float> workspace;
  progress bar((last - first) * steps, !s.quiet);
  const auto t0 = clock::now();
  // DDPM and DDIM run through sample(); the solvers of samplers/ (they have fractional_time) through
  // solve() with their own workspace, the UNet taking their times as they are (fractional for the Euler
  // family). Heun evaluates the model 2N - 1 times for N steps: the bar counts evaluations.
  diffuse::solver_workspace<float> solver_ws;
  auto run_batch = [&](auto& sampler, long b0, long b1) {
    const std::size_t n = static_cast<std::size_t>(b1 - b0);
    std::span<float> x(samples.data() + static_cast<std::size_t>(b0 - first) * per, n * per);
    const diffuse::sample_shape shape{n, static_cast<std::size_t>(C), static_cast<std::size_t>(h) * w};
    const diffuse::sample_options opts{.seed = s.seed, .first_sample = static_cast<std::uint64_t>(b0)};
    diffuse::fill_initial_noise<float>(x, shape, s.seed, static_cast<std::uint64_t>(b0));
    std::vector<int> cond(labels.begin() + (b0 - first), labels.begin() + (b1 - first));
    auto on_step = [&](const auto& e) {
      bar.update((b0 - first) * steps + static_cast<long>(n) * (e.index + 1) * steps / e.num_steps);
    };
    auto drive = [&](auto& model) {
      if constexpr (requires { std::remove_cvref_t<decltype(sampler)>::fractional_time; })
        diffuse::solve(sampler, model, x, shape, opts, solver_ws, on_step);
      else
        diffuse::sample(sampler, model, x, shape, opts, workspace, on_step);
    };
    if (s.guidance == 1.0) {
      auto model = net.conditioned(cond);
      drive(model);
    } else {
      // One network call over (conditional; unconditional) halves per step.
      std::vector<int> both = cond;
      both.insert(both.end(), n, null_class);
      auto model = diffuse::batched_cfg_model<float, decltype(net.conditioned(both))>(net.conditioned(both), shape, s.guidance);
      drive(model);
    }
  };
  auto run_all = [&](auto& sampler) {
    for (long b0 = first; b0 < last; b0 += s.batch) run_batch(sampler, b0, std::min(last, b0 + s.batch));
  };
  const diffuse::sigma_options sigmas{.spacing = spacing};
  const auto pred = sc.prediction;
  if (sampler_name == "ddim") {
    diffuse::ddim_sampler sampler(sc.schedule, timesteps,
                                  {.prediction = sc.prediction,
                                   .eta = s.eta,
                                   .set_alpha_to_one = sc.set_alpha_to_one,
                                   .use_clipped_model_output = s.clipped_eps,
                                   .processing = sc.processing});
    run_all(sampler);
  } else if (sampler_name == "ddpm") {
    diffuse::ddpm_sampler sampler(sc.schedule, timesteps, {.prediction = sc.prediction, .variance = sc.variance, .processing = sc.processing});
    run_all(sampler);
  } else if (flow && on_flow_sigmas) {
    // The flow model's own grid shift (FlowMatchEulerDiscreteScheduler's "shift", validated by load_solver)
    // is the flow_shift of DPMSolverMultistepScheduler / UniPCMultistepScheduler with use_flow_sigmas.
    (void)std::get<diffuse::flow_euler_sampler>(diffuse::load_solver(dir / "scheduler_config.json", steps));  // validates the config
    const diffuse::multistep_flow_options fo{.flow_shift = flow_shift(dir)};
    if (sampler_name == "unipc") {
      diffuse::unipc_sampler solver(diffuse::unipc_flow_sigmas(sc.schedule, steps, fo), {.prediction = pred});
      run_all(solver);
    } else {
      diffuse::dpm_solver_sampler solver(diffuse::dpm_solver_flow_sigmas(sc.schedule, steps, fo),
                                         {.order = sampler_name == "dpm++3m" ? 3 : 2, .prediction = pred});
      run_all(solver);
    }
  } else if (sampler_name == "dpm++2m" || sampler_name == "dpm++3m" || sampler_name == "sde-dpm++2m") {
    diffuse::dpm_solver_sampler solver(sc.schedule, steps, sigmas,
                                       {.order = sampler_name == "dpm++3m" ? 3 : 2,
                                        .algorithm = sampler_name == "sde-dpm++2m" ? diffuse::dpm_algorithm::sde_dpmsolver_pp
                                                                                : diffuse::dpm_algorithm::dpmsolver_pp,
                                        .prediction = pred});
    run_all(solver);
  } else if (sampler_name == "unipc") {
    diffuse::unipc_sampler solver(sc.schedule, steps, sigmas, {.prediction = pred});
    run_all(solver);
  } else if (sampler_name == "euler") {
    diffuse::euler_sampler solver(sc.schedule, steps, sigmas, {.prediction = pred});
    run_all(solver);
  } else if (sampler_name == "euler-a") {
    diffuse::euler_ancestral_sampler solver(sc.schedule, steps, sigmas, {.prediction = pred});
    run_all(solver);
  } else if (sampler_name == "heun") {
    diffuse::heun_sampler solver(sc.schedule, steps, sigmas, {.prediction = pred});
    run_all(solver);
  } else if (sampler_name == "flow-euler") {
    auto solver = std::get<diffuse::flow_euler_sampler>(diffuse::load_solver(dir / "scheduler_config.json", steps));
    run_all(solver);
  } else if (sampler_name == "flow-heun") {
    (void)std::get<diffuse::flow_euler_sampler>(diffuse::load_solver(dir / "scheduler_config.json", steps));  // validates the config
    diffuse::flow_heun_sampler solver(steps, {.num_train_timesteps = T, .shift = flow_shift(dir)});
    run_all(solver);
  } else {
    usage_error("--sampler " + sampler_name + " is unknown; expected " + std::string(sampler_names));
  }
  bar.finish();
  const double seconds = std::chrono::duration<double>(clock::now() - t0).count();

  return {std::move(samples), std::move(labels), C, h, w, first, steps, seconds, sampler_name};
}

/// Writes the PNG grid and, when asked, the raw samples; prints the time per sample.
inline void write_outputs(const settings& s, const generated& g) {
  const long n = static_cast<long>(g.labels.size()), first = g.first, last = g.first + n;
  const int C = g.channels, h = g.height, w = g.width, steps = g.steps;
  const std::size_t per = static_cast<std::size_t>(C) * h * w;
  const auto& samples = g.samples;
  const auto& labels = g.labels;
  const double seconds = g.seconds;
  // The grid: one column per requested digit (up to 10), in global index order.
  const int cols = static_cast<int>(std::min<std::size_t>(s.digits.size() < 2 ? 8 : s.digits.size(), 10));
  const int rows = static_cast<int>((n + cols - 1) / cols), zoom = 4, gap = 2;
  examples::canvas grid(cols * (w * zoom + gap) + gap, rows * (h * zoom + gap) + gap, 40);
  for (long i = 0; i < n; ++i)
    grid.tile(gap + static_cast<int>(i % cols) * (w * zoom + gap), gap + static_cast<int>(i / cols) * (h * zoom + gap),
              samples.data() + static_cast<std::size_t>(i) * per, w, h, zoom);
  // Both outputs are staged before either is put in place: a failure writing one leaves neither.
  const std::vector<unsigned char> png = examples::encode_png(grid);
  if (s.raw.empty()) {
    diffuse::write_file(s.output, png);
  } else {
    std::vector<std::int64_t> l64(labels.begin(), labels.end()), idx(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = first + i;
    const std::vector<unsigned char> raw = diffuse::encode_safetensors(
        {{"samples", {n, C, h, w}, samples}}, {{"labels", {n}, l64}, {"indices", {n}, idx}},
        {{"seed", std::to_string(s.seed)}, {"sampler", g.sampler}, {"steps", std::to_string(steps)},
         {"guidance", std::to_string(s.guidance)}});
    diffuse::write_files({{s.raw, raw}, {s.output, png}});
  }
  std::printf("%ld samples (indices %ld..%ld) with %s-%d, guidance %g, seed %llu: %.1f ms per sample, %.2f s in all -> %s%s%s\n", n, first,
              last - 1, g.sampler.c_str(), steps, s.guidance, static_cast<unsigned long long>(s.seed), 1000.0 * seconds / static_cast<double>(n),
              seconds, s.output.c_str(), s.raw.empty() ? "" : ", ", s.raw.c_str());
}


/// The options both programs share.
inline void add_generation_options(CLI::App& app, settings& s) {
  app.add_option("--model", s.model_dir,
                 "diffusers model folder (config.json, diffusion_pytorch_model.safetensors, scheduler_config.json), or the name of a "
                 "shipped model: digits, fashion")
      ->default_str(default_model_dir());
  app.add_option("--digits", s.digits, "classes to draw, e.g. 3,7 (sample i gets digits[i mod len])")->delimiter(',')->check(unsigned_integer_text)->capture_default_str();
  app.add_option("--count", s.count, "number of samples")->check(CLI::Range(1, 10'000'000))->capture_default_str();
  app.add_option("--sampler", s.sampler, sampler_names);
  app.add_option("--steps", s.steps, "sampling steps (default: 50, every training step for DDPM, 10 for flow-euler)")->check(CLI::Range(1, 1'000'000));
  app.add_option("--eta", s.eta, "DDIM eta (0 deterministic, 1 ancestral-like); DDIM only")->check(finite_non_negative)->capture_default_str();
  app.add_option("--spacing", s.spacing, "timestep spacing: trailing, leading or linspace")->capture_default_str();
  // With guidance the model's x̂0 often leaves [-1, 1]; diffusers' DDIM then clips x̂0 but keeps the
  // model's ε̂, so the step mixes two inconsistent predictions and digits drift brighter and lose their
  // class (the model card measures it). guided-diffusion re-derives ε̂ from the clipped x̂0; so do we.
  app.add_option("--clipped-eps", s.clipped_eps, "DDIM: re-derive eps from the clipped x0 (diffusers' use_clipped_model_output)")
      ->capture_default_str();
  app.add_option("--guidance", s.guidance, "classifier-free guidance scale w (1: conditional only, 0: unconditional)")
      ->check(finite_non_negative)
      ->capture_default_str();
  app.add_option("--null-class", s.null_class, "the unconditional class label (default: the last class)")->check(unsigned_integer_text);
  app.add_option("--seed", s.seed, "noise seed, 0 to 2^64 - 1")->check(unsigned_integer_text)->capture_default_str();
  app.add_option("--batch", s.batch, "samples per network batch")->check(CLI::Range(1, 1'000'000))->capture_default_str();
  app.add_option("--threads", s.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)")->check(CLI::Range(0, 4096))->capture_default_str();
  app.add_option("--output", s.output, "PNG grid to write")->capture_default_str();
  app.add_option("--raw", s.raw, "also write samples, labels and indices as safetensors");
  app.add_flag("--quiet", s.quiet, "no progress bar");
  app.footer(exit_status_help);
}

}  // namespace examples

