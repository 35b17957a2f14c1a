// Figure 6's baseline: a trivial Worker handler.
export default {
  fetch() {
    return new Response("ok");
  },
};
