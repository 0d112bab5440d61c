"""Checks tidemark's OpenLineage run events with the spec's own classes (openlineage-python).

Each event file given is rebuilt from the generated classes of the OpenLineage client, whose
validators check what the JSON schema requires (the run id is a UUID, the event time an ISO
date-time with a time, producer and schema URLs are URIs), and must serialize back to exactly
the JSON tidemark wrote: every facet's `_schemaURL` is then the one the spec version defines.
Prints one line per event and exits 1 on the first that does not hold.
"""

import json
import sys

from openlineage.client.generated import base
from openlineage.client.generated import error_message_run
from openlineage.client.generated import input_statistics_input_dataset as input_statistics
from openlineage.client.generated import output_statistics_output_dataset as output_statistics
from openlineage.client.generated import schema_dataset
from openlineage.client.serde import Serde


def schema_facet(facet):
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=field["name"],
                type=field.get("type"),
                ordinal_position=field.get("ordinal_position"),
            )
            for field in facet["fields"]
        ]
    )


def dataset_facets(dataset):
    facets = {}
    if "schema" in dataset.get("facets", {}):
        facets["schema"] = schema_facet(dataset["facets"]["schema"])
    return facets


def rebuild(event):
    base.set_producer(event["producer"])
    run_facets = {}
    if "errorMessage" in event["run"]["facets"]:
        error = event["run"]["facets"]["errorMessage"]
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error["message"], programmingLanguage=error["programmingLanguage"]
        )
    inputs = []
    for dataset in event["inputs"]:
        input_facets = {}
        statistics = dataset.get("inputFacets", {}).get("inputStatistics")
        if statistics is not None:
            input_facets["inputStatistics"] = input_statistics.InputStatisticsInputDatasetFacet(
                rowCount=statistics.get("rowCount"), size=statistics.get("size")
            )
        inputs.append(
            base.InputDataset(
                namespace=dataset["namespace"],
                name=dataset["name"],
                facets=dataset_facets(dataset),
                inputFacets=input_facets,
            )
        )
    outputs = []
    for dataset in event["outputs"]:
        output_facets = {}
        statistics = dataset.get("outputFacets", {}).get("outputStatistics")
        if statistics is not None:
            output_facets["outputStatistics"] = output_statistics.OutputStatisticsOutputDatasetFacet(
                rowCount=statistics.get("rowCount"), size=statistics.get("size")
            )
        outputs.append(
            base.OutputDataset(
                namespace=dataset["namespace"],
                name=dataset["name"],
                facets=dataset_facets(dataset),
                outputFacets=output_facets,
            )
        )
    return base.RunEvent(
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=base.Run(runId=event["run"]["runId"], facets=run_facets),
        job=base.Job(namespace=event["job"]["namespace"], name=event["job"]["name"], facets={}),
        eventType=base.EventType[event["eventType"]],
        inputs=inputs,
        outputs=outputs,
    )


def pruned(value):
    """The JSON without empty objects and lists: absent and empty mean the same to the spec,
    and the client leaves out the one and writes the other (a schema field's nested `fields`)."""
    if isinstance(value, dict):
        kept = {key: pruned(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in ({}, [])}
    if isinstance(value, list):
        return [pruned(item) for item in value]
    return value


def main(paths):
    for path in paths:
        with open(path, encoding="utf-8") as file:
            written = json.load(file)
        rebuilt = Serde.to_dict(rebuild(written))
        if pruned(rebuilt) != pruned(written):
            print(f"{path}: differs from the spec's classes")
            print("written:", json.dumps(pruned(written), sort_keys=True, indent=1))
            print("rebuilt:", json.dumps(pruned(rebuilt), sort_keys=True, indent=1))
            return 1
        print(f"{path}: valid {written['eventType']} event")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
