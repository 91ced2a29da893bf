// GET /info: TGI's Info (text-generation-inference router/src/lib.rs), with the fields that apply here.
import { deviceName, dtypeName } from "../../common/model-enums.js";
import { sendJson } from "../json-response.js";
import { modelInfo } from "../model-service.js";
import { tgiRoute } from "./tgi-error.js";

export const infoRoute = tgiRoute(async ({ pool, response }) => {
  const info = await modelInfo(pool);
  sendJson(response, 200, {
    model_id: info.modelId,
    model_sha: null,
    model_dtype: dtypeName(info.modelDtype),
    model_device_type: deviceName(info.device),
    model_pipeline_tag: "text-generation",
    // One sequence per request, one prompt per OpenAI completion.
    max_best_of: 1,
    max_client_batch_size: 1,
    max_input_tokens: info.maxInputTokens,
    max_total_tokens: info.maxTotalTokens,
    router: "loraserve",
    version: info.version,
    sha: null,
    docker_label: null,
  });
});
