from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig


def test_sdk_round_trip(gateway, executor):
    client = Client(SdkConfig(access_key_id="AK", access_key_secret="SK", endpoint=f"127.0.0.1:{gateway.port}", protocol="http", region_id="cn-hangzhou"))
    client.create_flow(models.CreateFlowRequest(name="f1", definition="version: v1", description="d"))
    client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    client.create_flow_alias(models.CreateFlowAliasRequest(flow_name="f1", name="prod", routing_configurations=[models.CreateFlowAliasRequestRoutingConfigurations(version="1", weight=5)]))
    r = client.start_execution(models.StartExecutionRequest(flow_name="f1", qualifier="prod", input='{"a": 1}'))
    assert r.headers["x-flow-version"] == "1"
    assert executor.records[-1]["version"] == "1"
